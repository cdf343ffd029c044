"""The broker relay: every outbox event, after its transaction commits, published to each
configured broker target in commit order (so in order per entity), at least once.

Each target has a row in `broker_relay_positions` with the position published so far. A run
claims the row's lease (`FOR UPDATE SKIP LOCKED` in a short transaction: one relay of all the
replicas publishes at a time, the others skip), reads a batch after the position, publishes it
outside any transaction, and records the acknowledged head of the batch together with a renewed
lease (only while the lease is still its own), then reads the next batch, until it has caught
up; it gives the lease back at the end. A relay that dies mid-batch leaves the position before
that batch: whoever takes the lease next (when it runs out, `LEASE_SECONDS`) publishes the batch
again, and the broker drops the copies by message id (JetStream) or consumers do (RabbitMQ's
`message_id`). A broker outage fails a run; the relay waits (a back-off up to
`MAX_BACKOFF_SECONDS`) and resumes from the stored position: nothing is lost."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from datetime import timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import real_now
from app.core.config import Settings, get_settings
from app.db.base import id_time
from app.db.repositories import broker as repo
from app.db.repositories import events as events_repo
from app.db.repositories.events import EventRecord
from app.domain.broker.publishers import Publisher, PublishFailed, publisher_for

log = logging.getLogger("app.broker")

LEASE_SECONDS = 30.0
MAX_BATCHES_PER_RUN = 100
MAX_BACKOFF_SECONDS = 30.0
LAG_COUNT_CAP = 1_000_000  # the lag gauge counts at most this many waiting events

LAG_EVENTS = Gauge(
    "livecollab_broker_lag_events",
    "Outbox events committed but not yet published to the broker target (counted up to 1,000,000)",
    ["broker"],
)
LAG_SECONDS = Gauge(
    "livecollab_broker_lag_seconds",
    "Age of the oldest outbox event not yet published to the broker target (0: none waiting)",
    ["broker"],
)
PUBLISHED = Counter("livecollab_broker_published_events", "Events this process published to the broker target", ["broker"])


class BrokerRelay:
    """The relay of one broker target. `run_once` is the periodic job's body; tests call it."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        batch: int = 1000,
        start: str = "earliest",
        lease_seconds: float = LEASE_SECONDS,
        max_batches: int = MAX_BATCHES_PER_RUN,
    ) -> None:
        self.publisher = publisher
        self.target = publisher.target
        self.batch = batch
        self.start = start
        self.lease = timedelta(seconds=lease_seconds)
        self.max_batches = max_batches
        self._failures = 0
        self._retry_at = 0.0

    async def run_once(self, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        """Publish what is waiting (if this relay gets the lease); the number of events the
        broker acknowledged. A failure is logged and retried after a back-off. With nothing
        waiting it only measures the lag (one read, no lease written)."""
        if await self.measure_lag(sessionmaker) == 0 or time.monotonic() < self._retry_at:
            return 0
        try:
            published = await self.publish_waiting(sessionmaker)
        except Exception as exc:  # a broker outage or a database error: wait, then resume
            self._failures += 1
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay
            log.warning("broker relay %s: %r; retrying in %.1f s", self.target, exc, delay)
            published = 0
        else:
            self._failures = 0
        if published:
            await self.measure_lag(sessionmaker)
        return published

    async def _first_position(self, session: AsyncSession) -> repo.Position:
        if self.start == "latest":
            return await events_repo.latest_position(session)
        return events_repo.start_position(session)

    async def _claim(self, session: AsyncSession, token: str) -> repo.Position | None:
        now = real_now()
        position = await repo.claim(session, self.target, token, now, now + self.lease)
        if position is None and await repo.state_of(session, self.target) is None:
            await repo.create_position(session, self.target, await self._first_position(session), now)
            position = await repo.claim(session, self.target, token, now, now + self.lease)
        return position

    async def _next_batch(self, session: AsyncSession, after: repo.Position) -> list[EventRecord]:
        return await events_repo.events_after(session, "operator", "", limit=self.batch, after=after)

    async def publish_waiting(self, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        token = secrets.token_hex(16)
        async with sessionmaker() as session:
            position = await self._claim(session, token)
            if position is None:  # another relay publishes now
                await session.commit()
                return 0
            batch = await self._next_batch(session, position)
            await session.commit()
        published = 0
        try:
            for _ in range(self.max_batches):
                if not batch:
                    break
                acknowledged, failure = len(batch), None
                try:
                    await self.publisher.publish(batch)
                except PublishFailed as exc:
                    acknowledged, failure = exc.acknowledged, exc
                async with sessionmaker() as session:
                    if acknowledged:
                        last = batch[acknowledged - 1]
                        now = real_now()
                        kept = await repo.advance(
                            session, self.target, token, (last.tx, last.key), last.id, acknowledged, now, now + self.lease
                        )
                        if not kept:  # the lease ran out and another relay took over: it goes on
                            await session.commit()
                            log.warning("broker relay %s: lease lost mid-run", self.target)
                            return published
                        published += acknowledged
                        PUBLISHED.labels(self.target).inc(acknowledged)
                    if failure is not None:
                        await session.commit()
                        raise failure
                    more = len(batch) == self.batch
                    batch = await self._next_batch(session, (last.tx, last.key)) if more else []
                    await session.commit()
        finally:
            with contextlib.suppress(Exception):
                async with sessionmaker() as session:
                    await repo.release(session, self.target, token)
                    await session.commit()
        return published

    async def measure_lag(self, sessionmaker: async_sessionmaker[AsyncSession]) -> int | None:
        """Set the lag gauges from the database (any replica can: the position is shared) and
        return the events waiting; None when unknown (no position yet, or a failed read)."""
        try:
            async with sessionmaker() as session:
                state = await repo.state_of(session, self.target)
                if state is None and self.start == "latest":
                    await session.commit()
                    return None  # the first run sets the position: now
                position = state.position if state is not None else events_repo.start_position(session)
                waiting, oldest = await events_repo.backlog(session, position, cap=LAG_COUNT_CAP)
                await session.commit()
        except Exception as exc:  # the gauges keep their last values; the run says what fails
            log.warning("broker relay %s: lag not measured: %r", self.target, exc)
            return None
        seconds = max(0.0, (real_now() - id_time(oldest)).total_seconds()) if oldest else 0.0
        LAG_EVENTS.labels(self.target).set(waiting)
        LAG_SECONDS.labels(self.target).set(seconds)
        return waiting

    async def close(self) -> None:
        await self.publisher.close()


def relays_for(settings: Settings) -> list[BrokerRelay]:
    """One relay per URL of `LC_EVENT_BROKER_URL` (comma-separated); none when it is unset."""
    urls = [u.strip() for u in (settings.event_broker_url or "").split(",") if u.strip()]
    return [
        BrokerRelay(
            publisher_for(
                url,
                stream=settings.event_broker_stream,
                exchange=settings.event_broker_exchange,
                subject_prefix=settings.event_broker_subject_prefix,
            ),
            batch=settings.event_broker_batch,
            start=settings.event_broker_start,
        )
        for url in urls
    ]


_relays: list[BrokerRelay] | None = None


async def relay_due(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """The periodic job (`app/modules.py`): every configured target's relay, once."""
    global _relays
    if _relays is None:
        _relays = relays_for(get_settings())
    published = 0
    for relay in _relays:
        published += await relay.run_once(sessionmaker)
    return published
