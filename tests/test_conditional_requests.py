"""Conditional requests beyond the task order (spec/client-contract.md, "Conditional requests"):
a campaign signup, whose `version` comes after nested fields, answers its `ETag` and 304; a
creation under an entity's path (a dispute of a task order, a redemption of a voucher) checks
`If-Match` against that entity, 412 with nothing written; and how `TxRoute` finds the version
of any answer, whatever the order of its fields."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select

from app.api.routing import TxRoute, VersionReading, version_reading
from app.db.models.incentives import Redemption
from app.db.models.task_orders import Dispute
from tests.conftest import Factory


# ------------------------------------------------------------------ a campaign signup
async def test_a_campaign_signup_answers_its_etag_and_304(client, factory: Factory):
    from tests.test_campaigns import act, world

    w = await world(client, factory)
    body = {"shop_ids": [m.id for m in w.merchants], "planned_live_at": w.campaign["live_from"]}
    r = await client.post(f"/v1/campaigns/{w.campaign['id']}/signups", headers=w.creator.headers, json=body)
    assert r.status_code == 201 and r.headers.get("etag") == f'"{r.json()["version"]}"', r.headers
    signup = r.json()
    url = f"/v1/campaign-signups/{signup['id']}"
    r = await client.get(url, headers=w.creator.headers)
    assert r.status_code == 200 and r.headers.get("etag") == f'"{signup["version"]}"', r.headers
    r = await client.get(url, headers={**w.creator.headers, "If-None-Match": f'"{signup["version"]}"'})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == f'"{signup["version"]}"'
    r = await act(client, w.merchants[0], signup["id"], "merchant-approve")
    assert r.status_code == 200 and r.headers.get("etag") == f'"{signup["version"] + 1}"', r.headers
    # the screen's version is stale now: the read answers the signup again, a stale action is 412
    r = await client.get(url, headers={**w.creator.headers, "If-None-Match": f'"{signup["version"]}"'})
    assert r.status_code == 200 and r.json()["version"] == signup["version"] + 1
    r = await client.post(f"{url}/withdraw", headers={**w.creator.headers, "If-Match": f'"{signup["version"]}"'})
    assert r.status_code == 412 and r.json()["code"] == "precondition_failed", r.text
    assert (r.json()["state"], r.json()["version"]) == ("pending_platform", signup["version"] + 1)


# ------------------------------------------------------------------ a dispute of a task order
async def _disputes_of(factory: Factory, order_id: str) -> int:
    async with factory.maker() as session:
        return (await session.execute(select(func.count()).where(Dispute.task_order_id == order_id))).scalar_one()


async def test_if_match_on_opening_a_dispute_names_the_orders_version(client, factory: Factory):
    """The order is at version 2 (created, then cancelled): a dispute opened with `If-Match`
    naming another version is 412 with the order's state, version and actions, and no dispute
    is written; with its version it opens."""
    from tests.test_task_orders_support import CANCEL, act, create_order, minute, ready_merchant

    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    order = await create_order(client, merchant, creator, product, minute(await factory.now() + timedelta(days=10)))
    r = await act(client, merchant, order["id"], "cancel", CANCEL)
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    url = f"/v1/task-orders/{order['id']}/disputes"
    for stale in ('"99"', '"1"'):
        r = await client.post(url, headers={**creator.headers, "If-Match": stale}, json={"reason": "准备工作已完成"})
        assert r.status_code == 412, r.text
        problem = r.json()
        assert problem["code"] == "precondition_failed"
        assert (problem["state"], problem["version"]) == ("cancelled_by_merchant", 2)
        assert isinstance(problem["allowed_actions"], list)
    assert await _disputes_of(factory, order["id"]) == 0
    assert (await client.get(f"/v1/task-orders/{order['id']}", headers=creator.headers)).json()["version"] == 2
    r = await client.post(url, headers={**creator.headers, "If-Match": '"2"'}, json={"reason": "准备工作已完成"})
    assert r.status_code == 201 and r.json()["state"] == "open", r.text
    assert await _disputes_of(factory, order["id"]) == 1
    r = await client.post(url, headers={**merchant.headers, "If-Match": "*"}, json={"reason": "y"})
    assert r.status_code == 409 and r.json()["code"] == "dispute_exists"  # `*`: no precondition


# ------------------------------------------------------------------ a redemption of a voucher
async def _redemptions_of(factory: Factory, voucher_id: str) -> int:
    async with factory.maker() as session:
        return (await session.execute(select(func.count()).where(Redemption.voucher_id == voucher_id))).scalar_one()


async def test_if_match_on_a_redemption_names_the_vouchers_version(client, factory: Factory):
    from tests.test_incentives import SH, published_world, vouchers

    w = await published_world(client, factory)
    voucher = w.v1
    url = f"/v1/vouchers/{voucher['id']}/redemptions"
    use = (await factory.now() + timedelta(days=10)).astimezone(SH).date()
    body = {"merchant_id": w.m[0].id, "amount_fen": 100, "use_date": str(use)}

    async def current() -> dict[str, Any]:
        return next(v for v in await vouchers(client, w.provider) if v["id"] == voucher["id"])

    r = await client.post(url, headers={**w.provider.headers, "If-Match": '"99"'}, json=body)
    assert r.status_code == 412, r.text
    problem = r.json()
    assert problem["code"] == "precondition_failed"
    assert (problem["state"], problem["version"]) == ("available", voucher["version"])
    assert isinstance(problem["allowed_actions"], list)
    assert await _redemptions_of(factory, voucher["id"]) == 0
    assert await current() == voucher  # nothing reserved, no version step
    r = await client.post(url, headers={**w.provider.headers, "If-Match": f'"{voucher["version"]}"'}, json=body)
    assert r.status_code == 201 and r.json()["state"] == "requested", r.text
    after = await current()
    assert after["remaining_fen"] == voucher["remaining_fen"] - 100 and after["version"] == voucher["version"] + 1
    # the screen from before that reservation is stale now
    r = await client.post(url, headers={**w.provider.headers, "If-Match": f'"{voucher["version"]}"'}, json=body)
    assert r.status_code == 412 and r.json()["version"] == after["version"], r.text
    assert await _redemptions_of(factory, voucher["id"]) == 1 and await current() == after


async def test_a_voucher_moved_after_its_if_match_was_checked_reserves_nothing(client, factory: Factory, monkeypatch):
    """Another request moves the voucher between the check of `If-Match` and the reservation:
    the reservation holds the voucher to the checked version, so the answer is 412 and nothing
    is written (the read is made to return the voucher as it was a version earlier)."""
    from app.domain.incentives import service
    from tests.test_incentives import SH, published_world, vouchers

    w = await published_world(client, factory)
    voucher = w.v1
    read = service._voucher_now

    async def read_before_the_other_request(*args: Any, **kwargs: Any):
        row, now = await read(*args, **kwargs)
        return dataclasses.replace(row, version=row.version - 1), now

    monkeypatch.setattr(service, "_voucher_now", read_before_the_other_request)
    use = (await factory.now() + timedelta(days=10)).astimezone(SH).date()
    r = await client.post(
        f"/v1/vouchers/{voucher['id']}/redemptions",
        headers={**w.provider.headers, "If-Match": f'"{voucher["version"] - 1}"'},
        json={"merchant_id": w.m[0].id, "amount_fen": 100, "use_date": str(use)},
    )
    assert r.status_code == 412, r.text
    assert (r.json()["code"], r.json()["version"], r.json()["state"]) == ("precondition_failed", voucher["version"], "available")
    assert await _redemptions_of(factory, voucher["id"]) == 0
    assert next(v for v in await vouchers(client, w.provider) if v["id"] == voucher["id"]) == voucher


# ------------------------------------------------------------------ finding the version
class _Note(BaseModel):
    version: int
    text: str


class _Shelf(BaseModel):
    id: str
    notes: list[_Note]  # nested objects with a `version` of their own, before the shelf's
    version: int


class _Tagged(BaseModel):
    id: str
    labels: dict[str, int]  # its keys are data: one may be `version`
    version: int


class _Card(BaseModel):
    id: str
    tags: list[str]
    contact: _Note | None = None
    version: int
    notes: list[_Note] = []


def test_version_reading_for_any_field_order():
    from app.domain.campaigns.schemas import CampaignSignupOut
    from app.domain.task_orders.schemas import TaskOrderOut

    assert version_reading(TaskOrderOut) is VersionReading.SCAN  # the benchmarked path keeps its regex
    assert version_reading(CampaignSignupOut) is VersionReading.SCAN  # nested fields first, none with a version
    assert version_reading(_Shelf) is VersionReading.PARSE
    assert version_reading(_Tagged) is VersionReading.PARSE
    assert version_reading(_Card) is VersionReading.PARSE  # `contact` may hold a version
    assert version_reading(_Note) is None  # no id: not an entity
    assert version_reading(list[_Shelf]) is None


class _NoSession:
    async def __aenter__(self) -> _NoSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None


async def test_an_answer_whose_version_follows_nested_versions_gets_its_own_etag():
    app = FastAPI()
    app.router.route_class = TxRoute
    app.state.sessionmaker = _NoSession

    @app.get("/shelves/{shelf_id}", response_model=_Shelf)
    async def shelf(shelf_id: str) -> _Shelf:
        return _Shelf(id=shelf_id, notes=[_Note(version=7, text="a")], version=3)

    @app.get("/tagged/{tagged_id}", response_model=_Tagged)
    async def tagged(tagged_id: str) -> _Tagged:
        return _Tagged(id=tagged_id, labels={"version": 9}, version=4)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as local:
        r = await local.get("/shelves/s1")
        assert r.status_code == 200 and r.headers["etag"] == '"3"', r.headers
        r = await local.get("/shelves/s1", headers={"If-None-Match": '"3"'})
        assert r.status_code == 304 and r.content == b""
        assert (await local.get("/shelves/s1", headers={"If-None-Match": '"7"'})).status_code == 200
        assert (await local.get("/tagged/t1")).headers["etag"] == '"4"'
