"""The PostgreSQL fast lane (app/db/repositories/_run.py) keeps SQLAlchemy's transaction
semantics: a failing statement inside `begin_nested()` rolls back to its savepoint and the
transaction goes on; errors are SQLAlchemy's; literals and types are processed as SQLAlchemy
would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, exc, select, text

from app.db.models.platform import ClockState, Timer
from app.db.repositories._run import prepared, run
from tests.conftest import postgres_only

_clock, _timers = ClockState.__table__, Timer.__table__
_FAILS = prepared(text("SELECT 1 / 0"))
_CLOCK = prepared(select(_clock.c.id).where(_clock.c.id == bindparam("id")))
_INSERT = prepared(
    _timers.insert().values(
        id=bindparam("id"), machine="test", entity_id=bindparam("entity"), action="expire", due_at=bindparam("due")
    )
)
_BY_ENTITY = prepared(select(_timers.c.machine, _timers.c.due_at).where(_timers.c.entity_id == bindparam("entity")))


@postgres_only
async def test_a_failure_in_a_savepoint_leaves_the_transaction_usable(db):
    async with db() as session:
        await run(session, _CLOCK, {"id": 1})
        with pytest.raises(exc.DBAPIError, match="division by zero"):
            async with session.begin_nested():
                await run(session, _FAILS)
        assert (await run(session, _CLOCK, {"id": 1})).first() is None  # not "transaction is aborted"
        await session.rollback()


@postgres_only
async def test_literals_and_types_are_processed(db):
    due = datetime(2026, 12, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))
    async with db() as session:
        await run(session, _INSERT, {"id": "tmr_fastlane", "entity": "e1", "due": due})
        row = (await run(session, _BY_ENTITY, {"entity": "e1"})).one()
        assert row.machine == "test"  # the statement's literal went in
        assert row.due_at == due and row.due_at.tzinfo is not None and row.due_at.astimezone(UTC).hour == 12
        with pytest.raises(exc.IntegrityError):
            async with session.begin_nested():
                await run(session, _INSERT, {"id": "tmr_fastlane", "entity": "e2", "due": due})
        assert (await run(session, _BY_ENTITY, {"entity": "e2"})).first() is None
        await session.rollback()
