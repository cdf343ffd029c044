"""The task-order hot path's round trips on PostgreSQL, every feature on: create at most 3
statements, accept at most 2 (BEGIN/COMMIT and the test's savepoints aside). The history row,
event, recipients, hold, ledger lines, products, timer, message and SMS ride in one
data-modifying statement behind the transition's conditional UPDATE."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from tests.conftest import Factory, postgres_only
from tests.test_task_orders_support import minute, order_body, ready_merchant

_FRAMING = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


class Statements:
    def __init__(self, engine) -> None:
        self.engine = engine.sync_engine
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, sql, params, context, many) -> None:
        if not sql.lstrip().upper().startswith(_FRAMING):
            self.seen.append(" ".join(sql.split()))


@postgres_only
async def test_create_three_statements_accept_two(client, engine, factory: Factory):
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    start = minute(await factory.now() + timedelta(days=5))
    body = order_body(creator, product_id, start)
    body["products"] = [{"product_id": product_id, "plan": "targeted", "commission_bp": 2000}]
    with Statements(engine) as create:
        r = await client.post("/v1/task-orders", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    order = r.json()
    assert len(create) <= 3, "\n".join(create)
    with Statements(engine) as accept:
        r = await client.post(f"/v1/task-orders/{order['id']}/accept", headers=creator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == order["version"] + 1
    assert len(accept) <= 2, "\n".join(accept)
    # everything the statements carried is there: history, events, targeted plan, messages, SMS
    history = (await client.get(f"/v1/task-orders/{order['id']}/history", headers=merchant.headers)).json()
    assert [h["action"] for h in history] == ["create", "accept"]
    plans = (await client.get("/v1/targeted-plans", headers=creator.headers)).json()["items"]
    assert [p["task_order_id"] for p in plans] == [order["id"]]
    events = (await client.get("/v1/events", headers=merchant.headers)).json()["items"]
    assert {"task_order.created", "task_order.accepted"} <= {e["type"] for e in events}
    inbox = (await client.get("/v1/notifications", headers=merchant.headers)).json()["items"]
    assert [n["kind"] for n in inbox][:1] == ["task_order.accepted"]
