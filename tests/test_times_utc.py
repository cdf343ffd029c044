"""Every time the service answers is UTC with a `Z` suffix (client-contract.md, "Language,
time, parameters"): bodies, headers, webhook payloads, event data and SSE; times read with an
offset are normalised to UTC."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from app.core.times import iso_z
from tests.conftest import Factory
from tests.test_task_orders_support import act, live, minute, ready_merchant

SHANGHAI = timezone(timedelta(hours=8))
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def times_in(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """Every string in a JSON document that is a date-time, with where it is."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in times_in(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in times_in(v, f"{path}[{i}]")]
    if isinstance(value, str) and _DATETIME.match(value):
        return [(path, value)]
    return []


class Seen:
    """Collects the answers of a walk and checks every time in them."""

    def __init__(self) -> None:
        self.times: list[tuple[str, str]] = []

    def __call__(self, r, where: str = ""):
        assert r.status_code < 500, r.text
        if r.headers.get("content-type", "").split(";")[0].endswith("json") and r.content:
            self.times += times_in(r.json(), f"{r.request.method} {r.request.url.path}{where}")
        return r

    def check(self, at_least: int) -> None:
        wrong = [(where, value) for where, value in self.times if not _UTC_Z.match(value)]
        assert not wrong, wrong
        assert len(self.times) >= at_least, self.times


def shanghai(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat()


async def test_a_task_orders_life_answers_only_utc_z_times(client, factory: Factory):
    seen = Seen()
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    platform = await factory.user("platform")
    op = await factory.operator()
    start = minute(await factory.now() + timedelta(days=1))
    body = {
        "title": "双十一专场带货",
        "contact_name": "王经理",
        "contact_phone": "13912345678",
        "expected_start_at": shanghai(start),  # +08:00 in, Z out
        "return_samples": False,
        "session_type": "dedicated",
        "hours": 3,
        "creator_id": creator.id,
        "products": [{"product_id": product_id, "plan": "general"}],
    }
    created = seen(await client.post("/v1/task-orders", headers=merchant.headers, json=body)).json()
    assert created["expected_start_at"] == iso_z(start)
    order_id = created["id"]
    seen(await act(client, creator, order_id, "accept"))
    session = await live(client, platform, creator, "utc-1", start + timedelta(minutes=5), start + timedelta(hours=3))
    seen.times += times_in(session, "ingest live session")
    seen(await act(client, creator, order_id, "submit"))  # may be 409 in this state; only times matter
    seen(await client.post("/v1/admin/clock/advance", headers=op.headers, json={"seconds": 9 * 86400}))
    seen(await client.get("/v1/admin/clock", headers=op.headers))
    seen(await client.get("/v1/clock", headers=merchant.headers))
    for user in (merchant, creator):
        seen(await client.get(f"/v1/task-orders/{order_id}", headers=user.headers))
        seen(await client.get(f"/v1/task-orders/{order_id}/history", headers=user.headers))
        seen(await client.get("/v1/task-orders", headers=user.headers))
        seen(await client.get("/v1/events", headers=user.headers))
        seen(await client.get("/v1/notifications", headers=user.headers))
        seen(await client.get("/v1/wallet/entries", headers=user.headers))
    seen(await client.get("/v1/wallet/top-ups", headers=merchant.headers))
    me = seen(await client.get("/v1/accounts/me", headers=merchant.headers)).json()
    assert _UTC_Z.match(me["created_at"]), me
    product = seen(await client.get(f"/v1/products/{product_id}", headers=merchant.headers)).json()
    assert _UTC_Z.match(product["created_at"]), product
    order = (await client.get(f"/v1/task-orders/{order_id}", headers=merchant.headers)).json()
    assert order["state"] == "completed", order
    # list filters with an offset are read as the same instant
    r = seen(
        await client.get(
            "/v1/task-orders",
            headers=merchant.headers,
            params={"created_from": shanghai(datetime.fromisoformat(created["created_at"]) - timedelta(minutes=1))},
        )
    )
    assert [o["id"] for o in r.json()["items"]] == [order_id]
    seen.check(at_least=20)


async def test_module_reads_and_extras_are_utc_z(client, factory: Factory):
    seen = Seen()
    op = await factory.operator()
    now = await factory.now()
    r = seen(
        await client.post(
            "/v1/campaigns",
            headers=op.headers,
            json={
                "title": "双11 直播间奖励",
                "description": "流量扶持",
                "signup_deadline": shanghai(now + timedelta(days=1)),
                "product_deadline": shanghai(now + timedelta(days=3)),
                "live_from": shanghai(now + timedelta(days=4)),
                "live_to": shanghai(now + timedelta(days=6)),
            },
        )
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert campaign["signup_deadline"] == iso_z(now + timedelta(days=1))
    creator = await factory.user("creator")
    seen(
        await client.put(
            f"/v1/campaigns/{campaign['id']}/eligible-creators", headers=op.headers, json={"creator_ids": [creator.id]}
        )
    )
    seen(await client.post(f"/v1/campaigns/{campaign['id']}/publish", headers=op.headers))
    seen(await client.get(f"/v1/campaigns/{campaign['id']}", headers=creator.headers))
    seen(await client.get(f"/v1/campaigns/{campaign['id']}/history", headers=op.headers))
    seen(await client.get("/v1/admin/quota-policy", headers=op.headers))
    await factory.advance(2 * 86400)
    late = seen(await client.post(f"/v1/campaigns/{campaign['id']}/signups", headers=creator.headers, json={}))
    assert late.status_code in (409, 422), late.text
    if late.json().get("code") == "deadline_passed":
        assert _UTC_Z.match(late.json()["deadline"]), late.json()
    seen.check(at_least=8)


async def test_naive_input_times_are_refused(client, factory: Factory):
    op = await factory.operator()
    r = await client.post(
        "/v1/campaigns",
        headers=op.headers,
        json={
            "title": "t",
            "description": "d",
            "signup_deadline": "2030-01-01T10:00:00",
            "product_deadline": "2030-01-03T10:00:00+08:00",
            "live_from": "2030-01-04T10:00:00Z",
            "live_to": "2030-01-06T10:00:00Z",
        },
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "signup_deadline"], r.text


def test_webhook_payloads_and_quota_extras_are_utc_z():
    from app.db.repositories.events import EventRecord
    from app.domain.webhooks.relay import event_body

    moment = datetime(2026, 12, 2, 18, 30, tzinfo=SHANGHAI)
    payload = json.loads(event_body(EventRecord("evt_1", "task_order.created", moment, {"a": 1})))
    assert payload["occurred_at"] == "2026-12-02T10:30:00Z"
    assert iso_z(datetime(2026, 12, 2, 10, 30, 0, 123456, tzinfo=UTC)) == "2026-12-02T10:30:00.123456Z"
    assert iso_z(datetime(2026, 12, 2, 10, 30)) == "2026-12-02T10:30:00Z"  # naive: the database's UTC


async def test_sse_events_carry_utc_z_times(client, factory: Factory):
    from app.domain.events import EventOut

    out = EventOut(id="evt_1", type="x", occurred_at=datetime(2026, 12, 2, 18, 0, tzinfo=SHANGHAI), data={})
    assert json.loads(out.model_dump_json())["occurred_at"] == "2026-12-02T10:00:00Z"


def test_every_datetime_field_of_every_schema_serializes_as_utc_z():
    """A new schema with a bare `datetime` field would answer `+08:00` or `+00:00` again."""
    import importlib
    import inspect
    import pkgutil
    import typing

    from pydantic import BaseModel

    import app

    bare = []
    for info in pkgutil.walk_packages(app.__path__, "app."):
        if info.name in ("app.__main__",):
            continue
        module = importlib.import_module(info.name)
        for name, model in vars(module).items():
            if not (inspect.isclass(model) and issubclass(model, BaseModel) and model.__module__ == module.__name__):
                continue
            for field_name, field in model.model_fields.items():
                kinds = {field.annotation, *typing.get_args(field.annotation)}
                if datetime in kinds and not any(type(m).__name__ == "PlainSerializer" for m in field.metadata):
                    bare.append(f"{module.__name__}.{name}.{field_name}")
    assert not bare, "use app.core.times.UtcDatetime / AwareUtcDatetime: " + ", ".join(bare)
