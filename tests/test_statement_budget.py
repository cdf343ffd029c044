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
# asyncpg's own type introspection, once per connection on its first statement using a type
_INTROSPECTION = ("SELECT current_setting('jit')", "WITH RECURSIVE typeinfo_tree", "SELECT set_config('jit'")


class Statements:
    """Every statement sent to PostgreSQL meanwhile, by either path: the fast lane's calls go
    straight to asyncpg (its query logger sees them, on the connection the test gives and on
    every connection checked out of the pool meanwhile); SQLAlchemy's own path is seen by
    `before_cursor_execute` (it runs asyncpg prepared statements, which the logger does not
    see, so nothing is counted twice)."""

    def __init__(self, engine, *connections) -> None:
        self.engine = engine.sync_engine
        self.connections = list(connections)  # asyncpg connections already checked out
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._cursor)
        event.listen(self.engine.pool, "checkout", self._checkout)
        for connection in self.connections:
            connection.add_query_logger(self._logged)
        return self.seen

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._cursor)
        event.remove(self.engine.pool, "checkout", self._checkout)
        for connection in self.connections:
            connection.remove_query_logger(self._logged)

    def _checkout(self, dbapi_connection, record, proxy) -> None:
        connection = dbapi_connection._connection
        connection.add_query_logger(self._logged)
        self.connections.append(connection)

    def _cursor(self, conn, cursor, sql, params, context, many) -> None:
        self._record(sql)

    def _logged(self, logged) -> None:
        self._record(logged.query)

    def _record(self, sql: str) -> None:
        sql = " ".join(sql.split())
        if not sql.upper().startswith(_FRAMING) and not sql.startswith(_INTROSPECTION):
            self.seen.append(sql)


async def _raw(db) -> object:
    """The asyncpg connection the `db` fixture binds the app's sessions to."""
    return (await db.kw["bind"].get_raw_connection()).dbapi_connection._connection


@postgres_only
async def test_create_three_statements_accept_two(client, engine, db, factory: Factory):
    await _budget(client, factory, engine, await _raw(db))


@postgres_only
async def test_the_same_budget_on_pooled_lean_sessions(committed_client, committed_factory, committed_app):
    """As the service runs: each request on its own pooled connection (`LeanSession`)."""
    await _budget(committed_client, committed_factory, committed_app.state.engine)


async def _budget(client, factory: Factory, engine, *connections) -> None:
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    start = minute(await factory.now() + timedelta(days=5))
    body = order_body(creator, product_id, start)
    body["products"] = [{"product_id": product_id, "plan": "targeted", "commission_bp": 2000}]
    with Statements(engine, *connections) as create:
        r = await client.post("/v1/task-orders", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    order = r.json()
    assert len(create) <= 3, "\n".join(create)
    assert any("INSERT INTO task_orders" in sql for sql in create), create  # the counter sees them
    with Statements(engine, *connections) as accept:
        r = await client.post(f"/v1/task-orders/{order['id']}/accept", headers=creator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == order["version"] + 1
    assert len(accept) <= 2, "\n".join(accept)
    assert any(sql.startswith("WITH gate AS (UPDATE task_orders") for sql in accept), accept
    # everything the statements carried is there: history, events, targeted plan, messages, SMS
    history = (await client.get(f"/v1/task-orders/{order['id']}/history", headers=merchant.headers)).json()
    assert [h["action"] for h in history] == ["create", "accept"]
    plans = (await client.get("/v1/targeted-plans", headers=creator.headers)).json()["items"]
    assert [p["task_order_id"] for p in plans] == [order["id"]]
    events = (await client.get("/v1/events", headers=merchant.headers)).json()["items"]
    assert {"task_order.created", "task_order.accepted"} <= {e["type"] for e in events}
    inbox = (await client.get("/v1/notifications", headers=merchant.headers)).json()["items"]
    assert [n["kind"] for n in inbox][:1] == ["task_order.accepted"]
