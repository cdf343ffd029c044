"""`LeanSession` (app/db/session.py), the service's session on PostgreSQL: a request that only
runs repository statements never builds an ORM session, and one that needs the ORM gets it on
the same connection and transaction — both kinds of work commit or roll back together, a
failing statement in a savepoint leaves the transaction usable, no connection leaks, a broken
connection is not reused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, exc, func, select, text

from app.db.models.platform import Timer
from app.db.repositories._run import prepared, run
from app.db.session import LeanSession, make_sessionmaker
from tests.conftest import postgres_only
from tests.test_task_orders_support import minute, order_body, ready_merchant

_timers = Timer.__table__
_INSERT = prepared(
    _timers.insert().values(
        id=bindparam("id"), machine="lean-test", entity_id=bindparam("id"), action="expire", due_at=bindparam("due")
    )
)
_COUNT = prepared(select(func.count()).select_from(_timers).where(_timers.c.machine == "lean-test"))
_FAILS = prepared(text("SELECT 1 / 0"))
_DUE = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def maker(engine):
    maker = make_sessionmaker(engine)
    yield maker
    async with engine.begin() as conn:
        await conn.execute(_timers.delete().where(_timers.c.machine == "lean-test"))


async def _count(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(_COUNT)).scalar_one()


@postgres_only
async def test_the_service_sessions_are_lean(maker):
    async with maker() as session:
        assert isinstance(session, LeanSession) and session.lean


@postgres_only
async def test_create_and_accept_build_no_orm_session(committed_client, committed_factory, monkeypatch):
    built = []
    original = LeanSession._build_orm
    monkeypatch.setattr(LeanSession, "_build_orm", lambda self: (built.append(1), original(self)))
    merchant, product_id = await ready_merchant(committed_client, committed_factory)
    creator = await committed_factory.user("creator")
    body = order_body(creator, product_id, minute(await committed_factory.now() + timedelta(days=5)))
    built.clear()
    r = await committed_client.post("/v1/task-orders", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    r = await committed_client.post(f"/v1/task-orders/{r.json()['id']}/accept", headers=creator.headers)
    assert r.status_code == 200, r.text
    assert built == []
    r = await committed_client.get(f"/v1/task-orders/{r.json()['id']}", headers=merchant.headers)
    assert r.json()["state"] == "waiting_live"  # committed, seen by the next request


@postgres_only
async def test_lean_statements_commit(engine, maker):
    async with maker() as session:
        await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
        assert session.lean
        await session.commit()
    assert await _count(engine) == 1


@postgres_only
async def test_lean_statements_roll_back_on_close(engine, maker):
    async with maker() as session:
        await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
    assert await _count(engine) == 0


@postgres_only
async def test_orm_work_joins_the_lean_transaction(engine, maker):
    """A fast-lane row, then ORM work: one transaction, committed together or not at all."""
    for commit in (False, True):
        async with maker() as session:
            await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
            session.add(Timer(id="tmr_lean_2", machine="lean-test", entity_id="e2", action="expire", due_at=_DUE))
            assert not session.lean
            await session.flush()
            seen = (await session.execute(_COUNT)).scalar_one()
            assert seen == 2  # the ORM's connection sees the fast lane's uncommitted row
            await run(session, _INSERT, {"id": "tmr_lean_3", "due": _DUE})  # after the ORM, fast again
            if commit:
                await session.commit()
            else:
                await session.rollback()
        assert await _count(engine) == (3 if commit else 0)


@postgres_only
async def test_a_failure_in_a_savepoint_keeps_the_transaction(engine, maker):
    async with maker() as session:
        await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
        with pytest.raises(exc.DBAPIError, match="division by zero"):
            async with session.begin_nested():
                await run(session, _INSERT, {"id": "tmr_lean_2", "due": _DUE})
                await run(session, _FAILS)
        await run(session, _INSERT, {"id": "tmr_lean_3", "due": _DUE})
        await session.commit()
    async with engine.connect() as conn:
        ids = (
            (await conn.execute(select(_timers.c.id).where(_timers.c.machine == "lean-test").order_by(_timers.c.id)))
            .scalars()
            .all()
        )
    assert ids == ["tmr_lean_1", "tmr_lean_3"]


@postgres_only
async def test_errors_are_sqlalchemys_and_leave_nothing(engine, maker):
    async with maker() as session:
        await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
        with pytest.raises(exc.IntegrityError):
            await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
        await session.rollback()
        await run(session, _INSERT, {"id": "tmr_lean_2", "due": _DUE})  # a fresh transaction
        await session.commit()
    assert await _count(engine) == 1


@postgres_only
async def test_no_connection_stays_checked_out(engine, maker):
    pool = engine.sync_engine.pool
    before = pool.checkedout()
    for i in range(5):
        async with maker() as session:
            await run(session, _INSERT, {"id": f"tmr_lean_{i}", "due": _DUE})
            if i % 2:
                session.add(Timer(id=f"tmr_orm_{i}", machine="lean-test", entity_id="e", action=f"a{i}", due_at=_DUE))
            if i == 3:
                with pytest.raises(exc.DBAPIError):
                    await run(session, _FAILS)
                continue
            await session.commit()
    assert pool.checkedout() == before
    assert await _count(engine) == 5  # i = 0, 1 (and its ORM row), 2, 4; i = 3 rolled back


@postgres_only
async def test_a_session_is_usable_again_after_close(engine, maker):
    session = maker()
    await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
    session.add(Timer(id="tmr_orm_1", machine="lean-test", entity_id="e", action="a", due_at=_DUE))
    await session.commit()
    await session.close()
    assert session.lean
    await run(session, _INSERT, {"id": "tmr_lean_2", "due": _DUE})
    await session.commit()
    await session.close()
    assert await _count(engine) == 3


@postgres_only
async def test_a_broken_connection_is_not_reused(engine, maker):
    """The backend is terminated under an open lean transaction: the statement fails as a
    SQLAlchemy error, the connection is invalidated, and the next session works."""
    async with maker() as session:
        await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})
        pid = await (await session.driver())._connection.fetchval("SELECT pg_backend_pid()")
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(exc.DBAPIError):
            await run(session, _INSERT, {"id": "tmr_lean_2", "due": _DUE})
    for _ in range(engine.sync_engine.pool.size() + 1):  # every pooled connection is a live one
        async with maker() as session:
            await run(session, _INSERT, {"id": "tmr_lean_3", "due": _DUE})
    assert await _count(engine) == 0


# ------------------------------------------------------------ one write without BEGIN/COMMIT
class Sent:
    """Every command the pooled connections send meanwhile (asyncpg's query logger)."""

    def __init__(self, engine) -> None:
        self.pool = engine.sync_engine.pool
        self.connections: list = []
        self.queries: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.pool, "checkout", self._checkout)
        return self.queries

    def __exit__(self, *exc) -> None:
        event.remove(self.pool, "checkout", self._checkout)
        for connection in self.connections:
            connection.remove_query_logger(self._logged)

    def _checkout(self, dbapi_connection, record, proxy) -> None:
        self.connections.append(dbapi_connection._connection)
        dbapi_connection._connection.add_query_logger(self._logged)

    def _logged(self, logged) -> None:
        self.queries.append(logged.query.split()[0].upper().rstrip(";"))


async def _ordered(client, factory):
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    body = order_body(creator, product_id, minute(await factory.now() + timedelta(days=5)))
    return merchant, creator, body


@postgres_only
async def test_create_and_accept_send_no_begin_or_commit(committed_client, committed_factory, committed_app):
    merchant, creator, body = await _ordered(committed_client, committed_factory)
    with Sent(committed_app.state.engine) as create:
        r = await committed_client.post("/v1/task-orders", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    order = r.json()
    with Sent(committed_app.state.engine) as accept:
        r = await committed_client.post(f"/v1/task-orders/{order['id']}/accept", headers=creator.headers)
    assert r.status_code == 200, r.text
    assert create and "BEGIN" not in create and "COMMIT" not in create, create
    assert accept and "BEGIN" not in accept and "COMMIT" not in accept, accept
    # committed: the next requests see the order accepted and the amount frozen
    r = await committed_client.get(f"/v1/task-orders/{order['id']}", headers=merchant.headers)
    assert r.json()["state"] == "waiting_live" and r.json()["hold_status"] == "held"
    balance = (await committed_client.get("/v1/wallet", headers=merchant.headers)).json()
    assert balance["frozen_fen"] == order["amount_fen"]


@postgres_only
async def test_with_an_idempotency_key_the_write_commits_with_its_answer(committed_client, committed_factory, committed_app):
    merchant, _, body = await _ordered(committed_client, committed_factory)
    headers = {**merchant.headers, "Idempotency-Key": "lean-create-1"}
    with Sent(committed_app.state.engine) as sent:
        first = await committed_client.post("/v1/task-orders", headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert sent.count("BEGIN") == 1 and sent.count("COMMIT") == 1, sent
    again = await committed_client.post("/v1/task-orders", headers=headers, json=body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


@postgres_only
async def test_an_overdue_order_is_expired_in_a_transaction_before_the_accept(committed_client, committed_factory, committed_app):
    """The accept finds the acceptance deadline passed: the expiry (a transition and the
    refund) fires first, in a transaction that the accept's own statements then join."""
    from app.state import clock

    merchant, creator, body = await _ordered(committed_client, committed_factory)
    before = (await committed_client.get("/v1/wallet", headers=merchant.headers)).json()
    order = (await committed_client.post("/v1/task-orders", headers=merchant.headers, json=body)).json()
    async with committed_app.state.sessionmaker() as session:  # business time moves; no timer fires
        await clock.advance(session, 25 * 3600)
        await session.commit()
    with Sent(committed_app.state.engine) as sent:
        r = await committed_client.post(f"/v1/task-orders/{order['id']}/accept", headers=creator.headers)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition", r.text
    assert "BEGIN" in sent, sent  # (the 409 rolls it back; the next read fires the expiry again)
    r = await committed_client.get(f"/v1/task-orders/{order['id']}", headers=merchant.headers)
    assert r.json()["state"] == "cancelled_timeout"
    after = (await committed_client.get("/v1/wallet", headers=merchant.headers)).json()
    assert after["available_fen"] == before["available_fen"] and after["frozen_fen"] == before["frozen_fen"]


@postgres_only
async def test_a_second_write_after_the_committed_one_fails_loudly(engine, maker):
    from app.db.bulk import insert_together
    from app.db.session import WriteAfterCommit

    row = {"id": "tmr_lean_1", "machine": "lean-test", "entity_id": "e1", "action": "a", "due_at": _DUE}
    async with maker() as session:
        session.defer_transaction()
        assert (await run(session, _COUNT)).scalar_one() == 0  # a read: no transaction
        await insert_together(session, (_timers, [row, {**row, "id": "tmr_lean_2", "action": "b"}]))
        assert (await run(session, _COUNT)).scalar_one() == 2  # committed by itself, seen by a read
        with pytest.raises(WriteAfterCommit):
            await run(session, _INSERT, {"id": "tmr_lean_3", "due": _DUE})
        with pytest.raises(WriteAfterCommit):
            session.add(Timer(id="tmr_orm_1", machine="lean-test", entity_id="e", action="c", due_at=_DUE))
        assert session.lean
    assert await _count(engine) == 2


@postgres_only
async def test_a_deferred_transaction_begins_for_anything_but_reads_and_one_write(engine, maker):
    async with maker() as session:
        session.defer_transaction()
        await run(session, _INSERT, {"id": "tmr_lean_1", "due": _DUE})  # not atomic: BEGIN first
        await run(session, _INSERT, {"id": "tmr_lean_2", "due": _DUE})
        await session.rollback()
    assert await _count(engine) == 0


# ------------------------------------------------------------ the pool opened at start-up
@postgres_only
async def test_warm_pool_opens_connections_that_know_the_array_types(caplog):
    """Start-up opens the pool's connections and teaches each the columns' array types, so the
    first requests neither open connections nor wait for asyncpg's type introspection."""
    from app.db.base import Base
    from app.db.session import make_engine, warm_pool
    from tests.conftest import TEST_DATABASE_URL

    engine = make_engine(TEST_DATABASE_URL, pool_size=3)
    try:
        await warm_pool(engine, 5, Base.metadata)  # at most the pool's size
        pool = engine.sync_engine.pool
        assert pool.checkedin() == 3 and pool.checkedout() == 0
        sent: list[str] = []
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).dbapi_connection._connection
            raw.add_query_logger(lambda logged: sent.append(logged.query))
            await raw.fetch("SELECT $1::varchar[], $2::integer[], $3::timestamptz[]", ["a"], [1], [])
        assert not any("typeinfo_tree" in q for q in sent), sent  # no introspection any more
    finally:
        await engine.dispose()


async def test_warm_pool_when_the_database_is_down_only_warns(caplog):
    from app.db.session import make_engine, warm_pool

    engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none", pool_size=2)
    try:
        with caplog.at_level("WARNING", logger="app.db"):
            await warm_pool(engine, 2)
        assert "could not open 2 of 2 pooled connections" in caplog.text
    finally:
        await engine.dispose()
