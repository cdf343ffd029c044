"""Server CPU per task-order create + accept pair, measured in-process.

    .venv/bin/python bench/request_cpu.py [--pairs 150] [--rounds 7] [--profile prof.txt]

The service's ASGI application is called directly (no HTTP client, no load generator in the
process) against a real PostgreSQL database of its own (`lc_request_cpu`, created and dropped;
never `test`); the figure is this process's CPU time per pair (`time.process_time`), the median
of `--rounds` rounds. Under wrk, throughput on these shared 2-core machines swings by ±15 % from
one minute to the next; this figure is steadier, for comparing one change of the request path
with the next (run it before and after, a few times each). It is not the judged figure (that is
`make bench` / perfbar under wrk). `--profile F` writes a cProfile of the last round (sorted by cumulative
time, or the raw profile when F ends in `.prof`); its count of function calls per pair is a
figure that does not drift with the machine's speed."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pg_url, recreate_database  # noqa: E402

DB = "lc_request_cpu"


def _scope(app, method: str, path: str, token: str, body: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "app": app,
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + token.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "state": {},
    }


async def call(app, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, bytes]:
    delivered = False
    status, out = 0, bytearray()

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    await app(_scope(app, method, path, token, body), receive, send)
    return status, bytes(out)


async def world(app) -> tuple[str, str, bytes]:
    """A merchant (bound, funded, one product) and a creator; their tokens and an order body."""
    import httpx

    from app.domain.accounts import AccountCreate, Role, create_account, start_session

    async def create_token(account_id: str, role: str) -> str:  # a token needs a session
        async with app.state.sessionmaker() as session:
            token = (await start_session(session, account_id, role)).access_token
            await session.commit()
        return token

    async with app.state.sessionmaker() as session:
        op = await create_account(
            session, AccountCreate(role=Role.operator, username="bench-op", password="bench-password-1", display_name="op")
        )
        await session.commit()
    headers = {"Authorization": f"Bearer {await create_token(op.id, 'operator')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:

        async def account(role: str, profile: dict) -> tuple[dict, str]:
            name = f"{role}-{uuid.uuid4().hex[:8]}"
            r = await client.post(
                "/v1/accounts",
                headers=headers,
                json={"role": role, "username": name, "password": "pw-" + name, "display_name": name, "profile": profile},
            )
            r.raise_for_status()
            return r.json(), await create_token(r.json()["id"], role)

        merchant, merchant_token = await account("merchant", {"shop_name": "s", "alliance_member": True, "experience_score": 4.8})
        creator, creator_token = await account(
            "creator",
            {
                "nickname": "c",
                "level": 3,
                "followers": 1000,
                "accepting_orders": True,
                "quotes": {"dedicated_hourly_fen": 1000, "shared_hourly_fen": 500},
            },
        )
        mine = {"Authorization": f"Bearer {merchant_token}"}
        (await client.post("/v1/xingtu-binding", headers=mine, json={})).raise_for_status()
        (
            await client.post(
                "/v1/wallet/top-ups", headers=mine, json={"amount_fen": 10**12, "method": "online", "reference": "bench"}
            )
        ).raise_for_status()
        product = (
            await client.post(
                "/v1/products",
                headers=mine,
                json={"title": "P", "brand": "B", "price_fen": 100, "inventory": 10**6, "general_commission_bp": 1000},
            )
        ).json()
        now = (await client.get("/v1/admin/clock", headers=headers)).json()["now"]
    start = (datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(days=5)).replace(second=0, microsecond=0)
    body = json.dumps(
        {
            "title": "带货任务",
            "contact_name": "张三",
            "contact_phone": "13800138000",
            "expected_start_at": start.isoformat().replace("+00:00", "Z"),
            "return_samples": False,
            "session_type": "dedicated",
            "hours": 1,
            "creator_id": creator["id"],
            "products": [{"product_id": product["id"], "plan": "general"}],
        },
        ensure_ascii=False,
    ).encode()
    return merchant_token, creator_token, body


async def pairs(app, n: int, merchant: str, creator: str, body: bytes) -> float:
    """CPU milliseconds of this process per create + accept pair, over `n` pairs."""
    started = time.process_time()
    for _ in range(n):
        status, answer = await call(app, "POST", "/v1/task-orders", merchant, body)
        assert status == 201, answer
        order_id = json.loads(answer)["id"]
        status, answer = await call(app, "POST", f"/v1/task-orders/{order_id}/accept", creator)
        assert status == 200, answer
    return (time.process_time() - started) / n * 1000


async def run(args) -> None:
    await recreate_database(DB)
    os.environ.update(
        LC_DATABASE_URL=pg_url(DB, "postgresql+asyncpg"), LC_ENV="test", LC_RUN_SWEEPER="false", LC_LOG_LEVEL="WARNING"
    )
    import app.db.models  # noqa: F401
    from app.core.config import get_settings
    from app.db.base import Base
    from app.main import create_app

    app = create_app(get_settings())
    try:
        async with app.state.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        merchant, creator, body = await world(app)
        await pairs(app, 50, merchant, creator, body)  # warm: compiled statements, prepared plans
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        figures = []
        for round_ in range(args.rounds):
            profiler = cProfile.Profile() if args.profile and round_ == args.rounds - 1 else None
            if profiler:
                profiler.enable()
            figures.append(await pairs(app, args.pairs, merchant, creator, body))
            if profiler:
                profiler.disable()
                if args.profile.endswith(".prof"):
                    profiler.dump_stats(args.profile)  # for pstats / snakeviz
                else:
                    with open(args.profile, "w") as out:
                        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(80)
        print(
            f"server CPU per create+accept pair: median {statistics.median(figures):.2f} ms, least {min(figures):.2f} ms "
            f"(rounds: {', '.join(f'{f:.2f}' for f in figures)}; {args.pairs} pairs each)"
        )
    finally:
        await app.state.engine.dispose()
        await recreate_database(DB, drop_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", help="write a cProfile of the last round to this file")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the warm-up")
    args = parser.parse_args()
    try:
        import uvloop  # as uvicorn runs the service
    except ImportError:  # pragma: no cover
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
