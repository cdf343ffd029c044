"""The broker relay (scale.md, "Events on a broker") against the machine's real NATS JetStream
and RabbitMQ on loopback: every event of a task order's life arrives in commit order with the
event id as message id; a relay killed mid-batch and restarted loses nothing (JetStream drops
the copies by `Nats-Msg-Id`; on RabbitMQ they carry the same `message_id`); two relays never
both publish a batch; a broker outage delays, never loses; the lag gauge; `broker setup` and
`events tail`. Every test uses its own stream / exchange / subject prefix and removes them.

The servers must be up (`.ci/run` starts them); without them these tests are skipped with a
message, or fail with LC_REQUIRE_BROKERS=1 (CI)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.db.repositories.events import EventRecord
from app.domain.broker import AmqpPublisher, BrokerRelay, NatsPublisher, Publisher, Received
from app.domain.broker import relay as relay_module
from tests.conftest import IS_POSTGRES, Factory, reachable
from tests.test_task_orders_support import act, create_order, live, minute, ready_merchant

ROOT = Path(__file__).resolve().parents[1]
NATS_URL = os.environ.get("LC_TEST_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("LC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _need(url: str) -> None:
    if reachable(url):
        return
    message = f"broker not reachable at {urlsplit(url).hostname}:{urlsplit(url).port} (.ci/run starts it)"
    if os.environ.get("LC_REQUIRE_BROKERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


class Target:
    """A broker target of its own for one test: a fresh stream / exchange and subject prefix,
    and a way to read everything that reached it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"lctest_{tag}"
        self.stream = f"LCTEST_{tag}"
        self.exchange = f"lctest_{tag}"
        self.url = NATS_URL if kind == "nats" else AMQP_URL
        self._publishers: list[Publisher] = []
        self._queue: Any = None
        self._amqp: Any = None

    def publisher(self) -> Publisher:
        made: Publisher = (
            NatsPublisher(self.url, self.stream, self.prefix)
            if self.kind == "nats"
            else AmqpPublisher(self.url, self.exchange, self.prefix)
        )
        self._publishers.append(made)
        return made

    async def open(self) -> None:
        await self.publisher().setup()
        if self.kind == "amqp":  # a queue bound before anything is published catches every message
            import aio_pika

            self._amqp = await aio_pika.connect(self.url)
            channel = await self._amqp.channel()
            exchange = await channel.get_exchange(self.exchange)
            self._queue = await channel.declare_queue(f"{self.exchange}_q", exclusive=True, auto_delete=True)
            await self._queue.bind(exchange, routing_key=f"{self.prefix}.#")

    async def received(self, expected: int, *, idle: float = 1.5) -> list[Received]:
        """Every message on the target so far, in broker order: waits for `expected` of them,
        then for stragglers (a duplicate) until `idle` seconds pass without one."""
        got: list[Received] = []
        if self.kind == "nats":
            reader = self.publisher()
            stream = reader.tail(from_start=True)
            try:
                while True:
                    try:
                        got.append(await asyncio.wait_for(anext(stream), idle if len(got) >= expected else 15))
                    except TimeoutError:
                        break
            finally:
                await stream.aclose()
        else:
            waited = 0.0
            while waited < (idle if len(got) >= expected else 15):
                message = await self._queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    waited += 0.05
                    continue
                waited = 0.0
                got.append(Received(message.routing_key or "", message.message_id, message.body))
        return got

    async def close(self) -> None:
        cleaner = self.publisher()
        try:
            if isinstance(cleaner, NatsPublisher):
                await cleaner.delete_stream()
            elif isinstance(cleaner, AmqpPublisher):
                await cleaner.delete_exchange()
        finally:
            if self._amqp is not None:
                await self._amqp.close()
            for made in self._publishers:
                await made.close()


@pytest.fixture(params=["nats", "amqp"])
async def target(request) -> AsyncIterator[Target]:
    _need(NATS_URL if request.param == "nats" else AMQP_URL)
    made = Target(request.param)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


async def feed(client, operator) -> list[dict[str, Any]]:
    """Every event, in commit order, as `GET /v1/events` shows it to an operator."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/events", headers=operator.headers, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items


async def orders_lives(client, factory: Factory, count: int) -> list[str]:
    """`count` task orders through create → accept → live → ended → approve (about 5 events
    each, with the accounts' and top-ups' events before)."""
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    platform = await factory.user("platform")
    start = minute(await factory.now() + timedelta(days=1))
    ids = []
    for i in range(count):
        created = await create_order(client, merchant, creator, product, start + timedelta(hours=2 * i), hours=1)
        assert (await act(client, creator, created["id"], "accept")).status_code == 200
        begin = start + timedelta(hours=2 * i)
        await live(client, platform, creator, f"ls-{i}-{uuid.uuid4().hex[:6]}", begin, ended=begin + timedelta(hours=1))
        assert (await act(client, merchant, created["id"], "approve")).status_code == 200
        ids.append(created["id"])
    return ids


def _ids(messages: Sequence[Received]) -> list[str | None]:
    return [m.message_id for m in messages]


async def test_every_event_of_a_task_orders_life_arrives_in_order(target: Target, committed_client, committed_factory):
    maker = committed_factory.maker
    relay = BrokerRelay(target.publisher(), batch=7)
    operator = await committed_factory.operator()
    merchant, product = await ready_merchant(committed_client, committed_factory)
    creator = await committed_factory.user("creator")
    platform = await committed_factory.user("platform")
    await relay.run_once(maker)  # published so far; the rest comes in later runs
    start = minute(await committed_factory.now() + timedelta(days=1))
    order = await create_order(committed_client, merchant, creator, product, start, hours=1)
    await relay.run_once(maker)
    assert (await act(committed_client, creator, order["id"], "accept")).status_code == 200
    await live(committed_client, platform, creator, "ls-broker", start, ended=start + timedelta(hours=1))
    await relay.run_once(maker)
    assert (await act(committed_client, merchant, order["id"], "approve")).status_code == 200
    assert await relay.run_once(maker) > 0

    events = await feed(committed_client, operator)
    messages = await target.received(len(events))
    # every outbox event once, in commit order, the event id as message id, the feed's JSON as body
    assert _ids(messages) == [e["id"] for e in events]
    assert [m.subject for m in messages] == [f"{target.prefix}.{e['type']}" for e in events]
    assert [json.loads(m.body) for m in messages] == events
    life = [json.loads(m.body)["type"] for m in messages if json.loads(m.body)["data"].get("id") == order["id"]]
    assert life == ["task_order.created", "task_order.accepted", "task_order.started", "task_order.ended", "task_order.approved"]
    assert await relay.run_once(maker) == 0  # caught up: nothing published twice


async def test_rabbitmq_batches_go_out_in_order_by_either_write_path(committed_client, committed_factory):
    """The AMQP adapter writes a batch as one frame write (`_publish_framed`, on aiormq's
    channel) or, should aiormq change, one `basic_publish` each: both in order, all confirmed."""
    _need(AMQP_URL)
    made = Target("amqp")
    await made.open()
    try:
        operator = await committed_factory.operator()
        await orders_lives(committed_client, committed_factory, 1)
        events = await feed(committed_client, operator)
        framed, each = made.publisher(), made.publisher()
        assert isinstance(each, AmqpPublisher)
        each.framed = False
        records = await _records(committed_factory.maker)
        await framed.publish(records[:5])
        await each.publish(records[5:])
        messages = await made.received(len(events))
        assert _ids(messages) == [e["id"] for e in events]
        assert [json.loads(m.body) for m in messages] == events
    finally:
        await made.close()


async def _records(maker) -> list[EventRecord]:
    from app.db.repositories.events import events_after

    async with maker() as session:
        return await events_after(session, "operator", "", limit=10_000, after=None)


class Dying(Publisher):
    """Publishes the first `survive` events of its second batch for real, then hangs like a
    process that is about to be killed."""

    def __init__(self, real: Publisher, survive: int) -> None:
        self.real, self.survive = real, survive
        self.target, self.subject_prefix = real.target, real.subject_prefix
        self.batches = 0
        self.dying = asyncio.Event()

    async def setup(self) -> str:
        return await self.real.setup()

    async def publish(self, events: Sequence[EventRecord]) -> None:
        self.batches += 1
        if self.batches < 2:
            return await self.real.publish(events)
        await self.real.publish(events[: self.survive])
        self.dying.set()
        await asyncio.Event().wait()

    def tail(self, subject: str | None = None, *, from_start: bool = False, on_ready: Any = None):
        return self.real.tail(subject, from_start=from_start, on_ready=on_ready)

    async def close(self) -> None:
        await self.real.close()


async def test_a_relay_killed_mid_batch_and_restarted_loses_none(target: Target, committed_client, committed_factory):
    maker = committed_factory.maker
    operator = await committed_factory.operator()
    await orders_lives(committed_client, committed_factory, 3)
    events = await feed(committed_client, operator)
    assert len(events) >= 17  # two batches and more
    dying = Dying(target.publisher(), survive=4)
    killed = asyncio.create_task(BrokerRelay(dying, batch=10, lease_seconds=1).run_once(maker))
    await asyncio.wait_for(dying.dying.wait(), 15)
    killed.cancel()  # mid-batch: 10 recorded, 4 more on the broker, not recorded
    with pytest.raises(asyncio.CancelledError):
        await killed
    await asyncio.sleep(1.1)  # a killed process would not give its lease back: it runs out
    restarted = BrokerRelay(target.publisher(), batch=10)
    assert await restarted.run_once(maker) == len(events) - 10

    messages = await target.received(len(events))
    if target.kind == "nats":  # JetStream dropped the 4 copies (same Nats-Msg-Id)
        assert _ids(messages) == [e["id"] for e in events]
    else:  # RabbitMQ has no de-duplication: the copies carry the same message_id
        assert len(messages) == len(events) + 4
        assert _ids(messages[14:18]) == _ids(messages[10:14]) == [e["id"] for e in events[10:14]]
        assert list(dict.fromkeys(_ids(messages))) == [e["id"] for e in events]
    assert [json.loads(m.body) for m in messages if m.message_id == events[12]["id"]][0] == events[12]


CHILD_RELAY = """
import asyncio, sys
from app.db.session import make_engine, make_sessionmaker
from app.domain.broker import AmqpPublisher, BrokerRelay, NatsPublisher

kind, url, name, prefix, database = sys.argv[1:6]
publisher = NatsPublisher(url, name, prefix) if kind == "nats" else AmqpPublisher(url, name, prefix)

async def main():
    maker = make_sessionmaker(make_engine(database))
    relay = BrokerRelay(publisher, batch=300, lease_seconds=1, max_batches=10**6)
    print("ready", flush=True)
    await relay.publish_waiting(maker)
    print("done", flush=True)

asyncio.run(main())
"""


async def test_a_relay_process_killed_mid_run_and_restarted_loses_none(target: Target, committed_factory):
    """A real kill (SIGKILL of a relay process while it publishes 3,000 events in batches of
    300): no lease given back, a batch half on the broker. The next relay takes over when the
    lease runs out."""
    from sqlalchemy import insert

    from app.core.clock import real_now
    from app.db.base import new_id, table_of
    from app.db.models.platform import Event
    from app.db.repositories import broker as repo
    from tests.conftest import TEST_DATABASE_URL

    maker = committed_factory.maker
    rows = [
        {"id": new_id("evt"), "type": "task_order.accepted", "occurred_at": real_now(), "data": {"id": f"tko_{i % 40}", "n": i}}
        for i in range(3000)
    ]
    for start in range(0, len(rows), 500):  # six transactions
        async with maker() as session:
            await session.execute(insert(table_of(Event)), rows[start : start + 500])
            await session.commit()
    name = target.stream if target.kind == "nats" else target.exchange
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_RELAY, target.kind, target.url, name, target.prefix, TEST_DATABASE_URL],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reference = target.publisher()
        published = 0
        for _ in range(600):  # until the child has recorded a batch or two, then kill it mid-run
            async with maker() as session:
                state = await repo.state_of(session, reference.target)
            published = state.published if state is not None else 0
            if published >= 300 or child.poll() is not None:
                break
            await asyncio.sleep(0.05)
        child.kill()
        child.wait(10)
        assert 0 < published < 3000, (published, child.stderr.read() if child.stderr else "")
    finally:
        if child.poll() is None:
            child.kill()
    async with maker() as session:
        state = await repo.state_of(session, reference.target)
    assert state is not None and state.claim_token is not None  # killed: the lease was not given back
    restarted = BrokerRelay(target.publisher(), batch=500)
    assert await restarted.run_once(maker) == 0  # the dead relay's lease still holds
    await asyncio.sleep(1.1)
    restarted._retry_at = 0
    assert await restarted.run_once(maker) == 3000 - state.published
    messages = await target.received(3000)
    from app.db.repositories.events import events_after

    async with maker() as session:  # commit order (on PostgreSQL (tx, id): ids of one millisecond are not ordered)
        ids = [e.id for e in await events_after(session, "operator", "", limit=10_000, after=None)]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    if target.kind == "nats":
        assert _ids(messages) == ids  # the copies of the killed batch were dropped
    else:
        assert list(dict.fromkeys(_ids(messages))) == ids
        assert len(messages) >= 3000


class Counting(Publisher):
    """Delegates, recording which events each publish carried (and taking its time, so two
    relays overlap)."""

    def __init__(self, real: Publisher) -> None:
        self.real = real
        self.target, self.subject_prefix = real.target, real.subject_prefix
        self.published: list[str] = []

    async def setup(self) -> str:
        return await self.real.setup()

    async def publish(self, events: Sequence[EventRecord]) -> None:
        await asyncio.sleep(0.05)
        await self.real.publish(events)
        self.published += [e.id for e in events]

    def tail(self, subject: str | None = None, *, from_start: bool = False, on_ready: Any = None):
        return self.real.tail(subject, from_start=from_start, on_ready=on_ready)

    async def close(self) -> None:
        await self.real.close()


async def test_two_relays_never_both_publish_a_batch(target: Target, committed_client, committed_factory):
    maker = committed_factory.maker
    operator = await committed_factory.operator()
    one, two = Counting(target.publisher()), Counting(target.publisher())
    relays = [BrokerRelay(one, batch=5), BrokerRelay(two, batch=5)]
    await orders_lives(committed_client, committed_factory, 1)
    for _ in range(3):  # the two run side by side while more events commit
        await asyncio.gather(*(r.run_once(maker) for r in relays), orders_lives(committed_client, committed_factory, 1))
    for _ in range(2):
        await asyncio.gather(*(r.run_once(maker) for r in relays))
    events = await feed(committed_client, operator)
    assert not set(one.published) & set(two.published)
    assert sorted(one.published + two.published) == sorted(e["id"] for e in events)
    messages = await target.received(len(events))
    assert _ids(messages) == [e["id"] for e in events]  # nothing twice, even on RabbitMQ


@pytest.mark.skipif(not IS_POSTGRES, reason="needs PostgreSQL (real parallel connections; SQLite serialises writers)")
async def test_a_claimed_lease_is_skipped_not_waited_for(committed_factory):
    from app.core.clock import real_now
    from app.db.repositories import broker as repo

    maker, broker = committed_factory.maker, f"nats://127.0.0.1:4222/LCTEST_{uuid.uuid4().hex[:8]}"
    now = real_now()
    async with maker() as setup:
        assert await repo.create_position(setup, broker, (0, ""), now)
        assert not await repo.create_position(setup, broker, (5, "evt_x"), now)  # the stored one stands
        await setup.commit()
    async with maker() as a, maker() as b:
        assert await repo.claim(a, broker, "token-a", now, now + timedelta(seconds=30)) == (0, "")
        # a's claim is not committed: b skips the locked row at once instead of waiting
        assert await asyncio.wait_for(repo.claim(b, broker, "token-b", now, now + timedelta(seconds=30)), 2) is None
        await b.rollback()
        await a.commit()
        assert await repo.claim(b, broker, "token-b", now, now + timedelta(seconds=30)) is None  # a's lease holds
        await b.rollback()
        assert not await repo.advance(b, broker, "token-b", (1, "evt_y"), "evt_y", 1, now, now)  # not b's to move
        assert await repo.advance(a, broker, "token-a", (1, "evt_y"), "evt_y", 1, now, now + timedelta(seconds=30))
        await repo.release(a, broker, "token-a")
        await a.commit()
        await b.rollback()
        assert await repo.claim(b, broker, "token-b", now, now + timedelta(seconds=30)) == (1, "evt_y")
        await b.commit()
    async with maker() as check:
        state = await repo.state_of(check, broker)
        assert state is not None and state.published == 1 and state.last_event_id == "evt_y" and state.claim_token == "token-b"


class Outage(Publisher):
    """A broker that is down for the first `down` publishes."""

    def __init__(self, real: Publisher, down: int) -> None:
        self.real, self.down = real, down
        self.target, self.subject_prefix = real.target, real.subject_prefix

    async def setup(self) -> str:
        return await self.real.setup()

    async def publish(self, events: Sequence[EventRecord]) -> None:
        if self.down:
            self.down -= 1
            raise ConnectionRefusedError("broker down")
        await self.real.publish(events)

    def tail(self, subject: str | None = None, *, from_start: bool = False, on_ready: Any = None):
        return self.real.tail(subject, from_start=from_start, on_ready=on_ready)

    async def close(self) -> None:
        await self.real.close()


async def test_a_broker_outage_delays_and_loses_nothing_and_the_lag_is_a_gauge(
    target: Target, committed_client, committed_factory
):
    maker = committed_factory.maker
    operator = await committed_factory.operator()
    await orders_lives(committed_client, committed_factory, 1)
    events = await feed(committed_client, operator)
    relay = BrokerRelay(Outage(target.publisher(), down=2), batch=4)
    assert await relay.run_once(maker) == 0  # down: logged, nothing recorded
    metrics = (await committed_client.get("/metrics")).text
    label = f'broker="{target.publisher().target}"'
    assert f"livecollab_broker_lag_events{{{label}}} {float(len(events))}" in metrics
    lag_seconds = [line for line in metrics.splitlines() if line.startswith(f"livecollab_broker_lag_seconds{{{label}}}")]
    assert len(lag_seconds) == 1 and float(lag_seconds[0].split()[-1]) >= 0
    assert await relay.run_once(maker) == 0  # within the back-off: not even tried
    relay._retry_at = 0  # the back-off is over
    assert await relay.run_once(maker) == 0  # still down
    relay._retry_at = 0
    assert await relay.run_once(maker) == len(events)  # back: everything, from the stored position
    metrics = (await committed_client.get("/metrics")).text
    assert f"livecollab_broker_lag_events{{{label}}} 0.0" in metrics
    assert f"livecollab_broker_lag_seconds{{{label}}} 0.0" in metrics
    assert _ids(await target.received(len(events))) == [e["id"] for e in events]


async def test_an_unreachable_broker_fails_the_run_not_the_service(committed_client, committed_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    await ready_merchant(committed_client, committed_factory)  # events to publish
    for publisher in (
        NatsPublisher(f"nats://127.0.0.1:{port}", "LCTEST_DOWN", "lctest_down"),
        AmqpPublisher(f"amqp://guest:guest@127.0.0.1:{port}/", "lctest_down", "lctest_down"),
    ):
        relay = BrokerRelay(publisher)
        assert await relay.run_once(committed_factory.maker) == 0
        assert relay._failures == 1
        await relay.close()


async def test_the_relay_starts_at_the_latest_position_when_told(target: Target, committed_client, committed_factory):
    maker = committed_factory.maker
    operator = await committed_factory.operator()
    await orders_lives(committed_client, committed_factory, 1)
    before = len(await feed(committed_client, operator))
    relay = BrokerRelay(target.publisher(), start="latest")
    assert await relay.run_once(maker) == 0
    await orders_lives(committed_client, committed_factory, 1)
    events = (await feed(committed_client, operator))[before:]
    assert await relay.run_once(maker) == len(events)
    assert _ids(await target.received(len(events))) == [e["id"] for e in events]


def _env(target: Target) -> dict[str, str]:
    return {
        **os.environ,
        "LC_EVENT_BROKER_URL": target.url,
        "LC_EVENT_BROKER_STREAM": target.stream,
        "LC_EVENT_BROKER_EXCHANGE": target.exchange,
        "LC_EVENT_BROKER_SUBJECT_PREFIX": target.prefix,
        "LC_LOG_LEVEL": "WARNING",
    }


def _cli(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=_env(target), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("kind", ["nats", "amqp"])
async def test_cli_broker_setup_is_idempotent_and_events_tail_prints_events(kind: str, committed_client, committed_factory):
    _need(NATS_URL if kind == "nats" else AMQP_URL)
    made = Target(kind)
    tail = None
    try:
        first = await asyncio.to_thread(_cli, made, "broker", "setup")
        assert first.returncode == 0, first.stderr
        second = await asyncio.to_thread(_cli, made, "broker", "setup")
        assert second.returncode == 0, second.stderr
        if kind == "nats":
            assert "created" in first.stdout and "exists" in second.stdout and made.stream in second.stdout
        else:
            assert made.exchange in first.stdout and made.exchange in second.stdout
        # follow from now on (NATS: also what the stream keeps, --from-start)
        command = [sys.executable, "-m", "app", "events", "tail", "--count", "3", "--timeout", "30"]
        tail = subprocess.Popen(command, cwd=ROOT, env=_env(made), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tail.stderr is not None
        ready = await asyncio.to_thread(tail.stderr.readline)
        assert ready.startswith("tailing "), ready
        operator = await committed_factory.operator()
        await orders_lives(committed_client, committed_factory, 1)
        assert await BrokerRelay(made.publisher()).run_once(committed_factory.maker) > 3
        out, err = await asyncio.to_thread(tail.communicate, timeout=40)
        assert tail.returncode == 0, err
        events = await feed(committed_client, operator)
        lines = out.splitlines()
        assert [json.loads(line.split(" ", 1)[1]) for line in lines] == events[:3]
        assert [line.split(" ", 1)[0] for line in lines] == [f"{made.prefix}.{e['type']}" for e in events[:3]]
        if kind == "nats":
            again = await asyncio.to_thread(_cli, made, "events", "tail", "--from-start", "--count", "2", "--timeout", "20")
            assert [json.loads(line.split(" ", 1)[1]) for line in again.stdout.splitlines()] == events[:2]
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()
        await made.close()


def test_relays_follow_the_configuration():
    from app.core.config import Settings

    assert relay_module.relays_for(Settings(LC_EVENT_BROKER_URL="")) == []
    both = relay_module.relays_for(
        Settings(LC_EVENT_BROKER_URL=f"{NATS_URL}, {AMQP_URL}", event_broker_stream="S1", event_broker_exchange="x1")
    )
    assert [r.target for r in both] == [f"{NATS_URL}/S1", "amqp://127.0.0.1:5672/%2F/x1"]
    with pytest.raises(ValueError):
        relay_module.relays_for(Settings(LC_EVENT_BROKER_URL="kafka://127.0.0.1:9092"))


def test_the_bench_runs_at_a_tiny_scale(tmp_path):
    """`bench/broker.py` cannot rot: 200 events through both brokers, every one checked there."""
    _need(NATS_URL)
    _need(AMQP_URL)
    run = subprocess.run(
        [sys.executable, "bench/broker.py", "--events", "200", "--batch", "50", "--sqlite"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "nats" in run.stdout and "amqp" in run.stdout and "every event arrived once" in run.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_two_service_replicas_publish_every_event_once_to_both_brokers(tmp_path):
    """The deployment as configured: `LC_EVENT_BROKER_URL` naming both brokers, two service
    processes on one database, each running the relay job; events written through either one
    reach each broker once, in commit order, and the lag gauge goes back to 0."""
    import httpx

    _need(NATS_URL)
    _need(AMQP_URL)
    nats_target, amqp_target = Target("nats"), Target("amqp")
    amqp_target.prefix = nats_target.prefix  # one subject prefix for both (one setting)
    await amqp_target.open()  # the exchange and a queue bound to it before any event
    await nats_target.open()  # the stream, so the test can read it at once (the relay would create it)
    database = f"sqlite+aiosqlite:///{tmp_path / 'replicas.db'}"
    env = {
        **os.environ,
        "LC_DATABASE_URL": database,
        "LC_ENV": "dev",
        "LC_LOG_LEVEL": "WARNING",
        "LC_RUN_SWEEPER": "true",
        "LC_ARGON2_TIME_COST": "1",
        "LC_ARGON2_MEMORY_COST_KIB": "8192",
        "LC_DB_POOL_SIZE": "5",
        "LC_DB_POOL_WARM": "0",
        "LC_BOOTSTRAP_OPERATOR_USERNAME": "brokerop",
        "LC_BOOTSTRAP_OPERATOR_PASSWORD": "broker-operator-pass-1",
        "LC_EVENT_BROKER_URL": f"{NATS_URL},{AMQP_URL}",
        "LC_EVENT_BROKER_STREAM": nats_target.stream,
        "LC_EVENT_BROKER_EXCHANGE": amqp_target.exchange,
        "LC_EVENT_BROKER_SUBJECT_PREFIX": nats_target.prefix,
    }
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    ports = [_free_port(), _free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--no-migrate-first"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) for port in ports]
        for client in clients:
            for _ in range(600):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        r = await clients[0].post("/v1/auth/token", data={"username": "brokerop", "password": "broker-operator-pass-1"})
        operator = {"Authorization": f"Bearer {r.json()['access_token']}"}
        body = {"role": "merchant", "username": "m_broker", "password": "merchant-pass-1", "display_name": "Shop"}
        assert (
            await clients[0].post("/v1/accounts", headers=operator, json={**body, "profile": {"shop_name": "S"}})
        ).status_code == 201
        r = await clients[1].post("/v1/auth/token", data={"username": "m_broker", "password": "merchant-pass-1"})
        merchant = {"Authorization": f"Bearer {r.json()['access_token']}"}
        for i in range(6):  # pending top-ups: one event each, through either replica
            top_up = {"amount_fen": 100 + i, "method": "bank_transfer", "reference": f"b{i}"}
            assert (await clients[i % 2].post("/v1/wallet/top-ups", headers=merchant, json=top_up)).status_code == 201
        events = (await clients[0].get("/v1/events", headers=operator, params={"limit": 100})).json()["items"]
        assert len(events) >= 6
        for received in (await nats_target.received(len(events)), await amqp_target.received(len(events))):
            assert _ids(received) == [e["id"] for e in events]
            assert [json.loads(m.body) for m in received] == events
        for _ in range(50):  # every replica measures the lag; after the last run it is 0
            metrics = (await clients[1].get("/metrics")).text
            lags = [line for line in metrics.splitlines() if line.startswith("livecollab_broker_lag_events{")]
            if len(lags) == 2 and all(line.endswith(" 0.0") for line in lags):
                break
            await asyncio.sleep(0.2)
        assert len(lags) == 2 and all(line.endswith(" 0.0") for line in lags), lags
        for client in clients:
            await client.aclose()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
        await nats_target.close()
        await amqp_target.close()
