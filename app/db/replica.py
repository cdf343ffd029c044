"""Heavy, lag-tolerant reads on a streaming replica (scale.md "Reads on replicas").

With `LC_DATABASE_REPLICA_URL` set, the operations marked `@replica_read` (app/api/routing.py)
read through a session on the replica while it is fresh enough, and on the primary otherwise.
Fresh enough means: the replica has replayed everything the primary had written when it was
last checked (its replay position has reached the primary's WAL position read just before), or
its last replayed transaction is at most `LC_REPLICA_MAX_LAG_SECONDS` old. The check costs two
one-row queries (one on each server) and is shared by every request of the next
`CHECK_INTERVAL` seconds in this process, so a request on the replica pays nothing for it.
A replica that cannot be reached counts as stale: the read goes to the primary, and a warning
is logged once per check.

The answer's `X-Data-As-Of` says how fresh it is: the replica's last replayed transaction
time (`pg_last_xact_replay_timestamp()`) on the replica, the primary's own time on the primary
(see `Freshness`)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.repositories import replication as repo
from app.db.session import make_engine, make_sessionmaker

log = logging.getLogger("app.db.replica")

CHECK_INTERVAL = 1.0  # seconds a check is reused for (Replica.check_interval)
# Marks a session opened on the replica: nothing may write through it (app/state/timers.py
# leaves due timers to the sweeper and to the next read on the primary).
ON_REPLICA = "on_replica"


@dataclass(frozen=True, slots=True)
class Freshness:
    """Where a read goes and how fresh its data is: `on_replica` with `as_of` the replica's last
    replayed transaction time (None when it has replayed none since it started: its data is
    then as of `checked_at`), or on the primary (`as_of` None: as of the request's own time)."""

    on_replica: bool
    lag_seconds: float | None
    as_of: datetime | None
    checked_at: datetime

    def data_as_of(self, now: datetime) -> datetime:
        """For `X-Data-As-Of`: the replica's last replayed transaction (or, none replayed since
        it started, the check's time: it had then replayed everything); on the primary, `now`."""
        if not self.on_replica:
            return now
        return self.as_of or self.checked_at


class Replica:
    """The replica's engine and the process-wide freshness check."""

    def __init__(self, primary: AsyncEngine, url: str, max_lag_seconds: float, pool_size: int = 10) -> None:
        self.primary = primary
        # pinged at checkout: a replica restarted since leaves dead connections in the pool, and
        # a read that finds one goes to the primary instead (app/api/routing.py)
        self.engine = make_engine(url, pool_size=pool_size, pool_pre_ping=True)
        self.sessionmaker: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)
        self.max_lag_seconds = max_lag_seconds
        self.check_interval = CHECK_INTERVAL
        self._checked: tuple[float, Freshness] | None = None
        self._lock = asyncio.Lock()

    async def freshness(self) -> Freshness:
        """The last check if it is recent, else a new one (one at a time per process)."""
        checked = self._checked
        if checked is not None and time.monotonic() - checked[0] < self.check_interval:
            return checked[1]
        async with self._lock:
            checked = self._checked
            if checked is not None and time.monotonic() - checked[0] < self.check_interval:
                return checked[1]
            result = await self._check()
            self._checked = (time.monotonic(), result)
            return result

    def forget(self) -> None:
        """Check again on the next read (after the replica failed a read, say)."""
        self._checked = None

    async def _check(self) -> Freshness:
        now = datetime.now(UTC)
        try:
            async with self.primary.connect() as connection:
                primary_lsn = await repo.primary_position(connection)
            async with self.engine.connect() as connection:
                state = await repo.replica_state(connection, primary_lsn)
        except Exception as error:  # a replica (or primary) that cannot answer: read on the primary
            log.warning("replica check failed, reading on the primary: %s: %s", type(error).__name__, str(error)[:200])
            return Freshness(False, None, None, now)
        if not state.in_recovery:  # promoted, or a misconfiguration pointing at a primary
            log.warning("LC_DATABASE_REPLICA_URL is not in recovery: reading on the primary")
            return Freshness(False, None, None, now)
        if state.caught_up:
            lag: float | None = 0.0
        elif state.replayed_at is None:
            lag = None  # replaying, and no transaction replayed yet since it started
        else:
            lag = max(0.0, (state.now - state.replayed_at).total_seconds())
        fresh = lag is not None and lag <= self.max_lag_seconds
        if not fresh:
            log.info("replica lags %s s (limit %s s): reading on the primary", lag, self.max_lag_seconds)
        return Freshness(fresh, lag, state.replayed_at, now)

    async def dispose(self) -> None:
        await self.engine.dispose()
