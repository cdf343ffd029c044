"""The broker relay's throughput (issue #17: at least 2,000 events/s on this machine): events
in the outbox, published by `BrokerRelay` to the real NATS JetStream and/or RabbitMQ, as fast
as it goes.

    .venv/bin/python bench/broker.py                       # 20,000 events, both brokers, PostgreSQL
    .venv/bin/python bench/broker.py --events 2000 --broker nats --sqlite

Creates its own database (`lc_bench_broker`, dropped at the end unless --keep; or a temporary
SQLite file), migrates it, writes `--events` task-order events in transactions of 500 (as the
machines write them: one row each with its data), then times the relay from the first claim to
the last acknowledged batch: reading the outbox in commit order, the JSON bodies, the pipelined
publishes and their acknowledgements (JetStream `publish_async` / RabbitMQ publisher confirms),
the position recorded per batch. Each broker gets a stream / exchange of its own (removed at
the end); the count that arrived is checked on the broker. Prints events/s (wall) and the
process's CPU seconds per 1,000 events."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import migrate, pg_url, recreate_database  # noqa: E402

NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CHUNK = 500


async def fill(maker, count: int) -> None:
    from sqlalchemy import insert

    from app.db.base import new_id, table_of
    from app.db.models.platform import Event

    events = table_of(Event)
    now = datetime.now(UTC)
    for start in range(0, count, CHUNK):
        rows = []
        for i in range(start, min(count, start + CHUNK)):
            entity = f"tko_{i // 5:026d}"
            action, to = [
                ("create", "pending_accept"),
                ("accept", "waiting_live"),
                ("start", "live"),
                ("end", "pending_review"),
                ("approve", "completed"),
            ][i % 5]
            rows.append(
                {
                    "id": new_id("evt"),
                    "type": f"task_order.{to if action == 'create' else action + 'ed'}",
                    "occurred_at": now,
                    "data": {
                        "id": entity,
                        "machine": "task_order",
                        "action": action,
                        "from_state": None,
                        "to_state": to,
                        "actor_id": "acc_bench",
                        "actor_role": "merchant",
                        "version": i % 5 + 1,
                    },
                }
            )
        async with maker() as session:
            await session.execute(insert(events), rows)
            await session.commit()


async def measure(kind: str, maker, count: int, batch: int) -> dict[str, float]:
    from app.domain.broker import AmqpPublisher, BrokerRelay, NatsPublisher

    tag = uuid.uuid4().hex[:8]
    publisher = (
        NatsPublisher(NATS_URL, f"LCBENCH_{tag}", f"lcbench_{tag}")
        if kind == "nats"
        else AmqpPublisher(AMQP_URL, f"lcbench_{tag}", f"lcbench_{tag}")
    )
    await publisher.setup()
    queue = connection = None
    if kind == "amqp":  # a queue that keeps what arrives, to count it
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel()
        queue = await channel.declare_queue(f"lcbench_{tag}_q", auto_delete=False, durable=False)
        await queue.bind(await channel.get_exchange(f"lcbench_{tag}"), routing_key=f"lcbench_{tag}.#")
    relay = BrokerRelay(publisher, batch=batch, max_batches=10**9)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        published = await relay.publish_waiting(maker)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if kind == "nats":
            assert isinstance(publisher, NatsPublisher)
            js = await publisher._jetstream()
            arrived = (await js.stream_info(publisher.stream)).state.messages
            await publisher.delete_stream()
        else:
            assert queue is not None and connection is not None and isinstance(publisher, AmqpPublisher)
            await asyncio.sleep(0.5)
            arrived = (await queue.channel.declare_queue(queue.name, passive=True)).declaration_result.message_count
            await queue.delete(if_unused=False, if_empty=False)
            await publisher.delete_exchange()
            await connection.close()
    finally:
        await publisher.close()
    if published != count or arrived != count:
        raise SystemExit(f"{kind}: published {published}, arrived {arrived}, expected {count}")
    return {"events_per_s": count / wall, "wall_s": wall, "cpu_ms_per_1000": cpu / count * 1_000_000}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--broker", choices=["nats", "amqp", "both"], default="both")
    parser.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead of PostgreSQL")
    parser.add_argument("--db", default="lc_bench_broker")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from app.db.base import Base
    from app.db.session import make_engine, make_sessionmaker

    if args.sqlite:
        import app.db.models  # noqa: F401

        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='lc-bench-broker-')}/bench.db"
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    else:
        await recreate_database(args.db)
        await asyncio.to_thread(migrate, args.db)
        url = pg_url(args.db, "postgresql+asyncpg")
        engine = make_engine(url, pool_size=5)
    maker = make_sessionmaker(engine)
    engine_name = "SQLite" if args.sqlite else "PostgreSQL"
    try:
        kinds = ["nats", "amqp"] if args.broker == "both" else [args.broker]
        await fill(maker, args.events)
        print(f"{args.events} events in the outbox ({engine_name}), batches of {args.batch}")
        for kind in kinds:
            result = await measure(kind, maker, args.events, args.batch)
            print(
                f"{kind:5} {result['events_per_s']:8.0f} events/s  ({result['wall_s']:.2f} s wall, "
                f"{result['cpu_ms_per_1000']:.0f} ms CPU per 1,000 events; every event arrived once)"
            )
    finally:
        await engine.dispose()
        if not args.sqlite and not args.keep:
            await recreate_database(args.db, drop_only=True)


if __name__ == "__main__":
    asyncio.run(main())
