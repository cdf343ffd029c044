"""Task-order load generator: full lifecycles over HTTP against the service on PostgreSQL, and
create+accept against both the service and the bare asyncpg reference (`bare_app.py`) under
the same load, in one run.

    make bench                      # or: .venv/bin/python bench/run.py --seconds 15 --concurrency 16

Prints transitions per second, p50/p99 latency per operation, the service/bare ratio and the
peak RSS of each server process. Needs PostgreSQL (BENCH_PG, default the local `test` server);
it creates and drops its own database `lc_bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "lc_bench"
SERVICE, BARE = "http://127.0.0.1:8101", "http://127.0.0.1:8102"
PASSWORD = "bench-password-1"


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.transitions = 0

    async def call(self, name: str, coro) -> httpx.Response:
        started = time.perf_counter()
        response = await coro
        self.latency[name].append(time.perf_counter() - started)
        if response.status_code >= 300:
            self.errors[f"{name} {response.status_code}"] += 1
        return response

    def summary(self, seconds: float) -> list[str]:
        lines = [f"  transitions/s {self.transitions / seconds:8.1f}"]
        for name, values in self.latency.items():
            values = sorted(values)
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            lines.append(f"  {name:<12} n={len(values):6d}  p50={statistics.median(values) * 1000:7.2f} ms"
                         f"  p99={p99 * 1000:7.2f} ms")
        if self.errors:
            lines.append(f"  errors: {dict(self.errors)}")
        return lines


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def fresh_database() -> str:
    conn = await asyncpg.connect(f"{PG}/test")
    await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {DB}")
    await conn.close()
    return f"{PG}/{DB}"


async def drop_database() -> None:
    conn = await asyncpg.connect(f"{PG}/test")
    await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await conn.close()


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A server process; its output goes to a temporary file (a pipe nobody reads could fill up)."""
    log = tempfile.NamedTemporaryFile(prefix="lc-bench-", suffix=".log", delete=False)  # noqa: SIM115
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


class World:
    """Accounts made through the API: merchants funded and bound, creators with quotes."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tokens: dict[str, dict[str, str]] = {}
        self.merchants: list[tuple[str, str]] = []  # (id, product id)
        self.creators: list[str] = []
        self.platform = ""

    async def login(self, username: str) -> dict[str, str]:
        r = await self.client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def account(self, op: dict[str, str], role: str, username: str, profile: dict) -> str:
        r = await self.client.post("/v1/accounts", headers=op, json={
            "role": role, "username": username, "password": PASSWORD, "display_name": username, "profile": profile})
        r.raise_for_status()
        self.tokens[r.json()["id"]] = await self.login(username)
        return r.json()["id"]

    async def build(self, merchants: int, creators: int) -> None:
        op = await self.login("bench-operator")
        self.platform = await self.account(op, "platform", "bench-platform", {})
        for i in range(merchants):
            mid = await self.account(op, "merchant", f"bench-m{i}", {"shop_name": f"Shop {i}", "alliance_member": True})
            h = self.tokens[mid]
            (await self.client.post("/v1/xingtu-binding", headers=h, json={})).raise_for_status()
            top_up = await self.client.post("/v1/wallet/top-ups", headers=h, json={
                "amount_fen": 10**11, "method": "online", "reference": f"bench-{i}"})
            top_up.raise_for_status()
            if top_up.json()["state"] != "confirmed":  # production: no instant gateway, an operator confirms
                (await self.client.post(f"/v1/wallet/top-ups/{top_up.json()['id']}/confirm", headers=op,
                                        json={})).raise_for_status()
            product = await self.client.post("/v1/products", headers=h, json={
                "title": f"Product {i}", "brand": "B", "price_fen": 9900, "inventory": 10**6,
                "general_commission_bp": 1000})
            product.raise_for_status()
            self.merchants.append((mid, product.json()["id"]))
        for i in range(creators):
            self.creators.append(await self.account(op, "creator", f"bench-c{i}", {
                "nickname": f"Creator {i}", "level": 3, "accepting_orders": True,
                "quotes": {"dedicated_hourly_fen": 1000, "shared_hourly_fen": 500},
                "contact": {"phone": "13800138000"}}))


def order_body(creator_id: str, product_id: str, start: datetime) -> dict:
    return {"title": "直播专场", "contact_name": "王经理", "contact_phone": "13900139000",
            "expected_start_at": start.isoformat(), "return_samples": False, "session_type": "dedicated",
            "hours": 1, "creator_id": creator_id,
            "products": [{"product_id": product_id, "plan": "general", "commission_bp": 1000}]}


async def lifecycle_worker(world: World, stats: Stats, worker: int, deadline: float) -> None:
    client = world.client
    merchant_id, product_id = world.merchants[worker % len(world.merchants)]
    creator_id = world.creators[worker]
    mh, ch, ph = world.tokens[merchant_id], world.tokens[creator_id], world.tokens[world.platform]
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        start = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
        r = await stats.call("create", client.post("/v1/task-orders", headers=mh,
                                                   json=order_body(creator_id, product_id, start)))
        if r.status_code != 201:
            continue
        order = r.json()["id"]
        stats.transitions += 1
        if (await stats.call("accept", client.post(f"/v1/task-orders/{order}/accept", headers=ch, json={}))
                ).status_code == 200:
            stats.transitions += 1
        session = {"external_id": f"w{worker}-{n}-{order}", "host_id": creator_id, "started_at": start.isoformat(),
                   "peak_viewers": 100, "room_url": "https://live.example/room"}
        if (await stats.call("live_start", client.post("/v1/ingest/live-sessions", headers=ph, json=session))
                ).status_code < 300:
            stats.transitions += 1
        session["ended_at"] = (start + timedelta(hours=1)).isoformat()
        if (await stats.call("live_end", client.post("/v1/ingest/live-sessions", headers=ph, json=session))
                ).status_code < 300:
            stats.transitions += 1
        if (await stats.call("approve", client.post(f"/v1/task-orders/{order}/approve", headers=mh, json={}))
                ).status_code == 200:
            stats.transitions += 1


async def create_accept_worker(world: World, stats: Stats, worker: int, deadline: float) -> None:
    client = world.client
    merchant_id, product_id = world.merchants[worker % len(world.merchants)]
    creator_id = world.creators[worker]
    mh, ch = world.tokens[merchant_id], world.tokens[creator_id]
    while time.perf_counter() < deadline:
        start = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
        r = await stats.call("create", client.post("/v1/task-orders", headers=mh,
                                                   json=order_body(creator_id, product_id, start)))
        if r.status_code != 201:
            continue
        stats.transitions += 1
        if (await stats.call("accept", client.post(f"/v1/task-orders/{r.json()['id']}/accept", headers=ch,
                                                   json={}))).status_code == 200:
            stats.transitions += 1


async def bare_worker(client: httpx.AsyncClient, stats: Stats, worker: int, deadline: float) -> None:
    wallet = f"w{worker % 40}"
    while time.perf_counter() < deadline:
        r = await stats.call("create", client.post("/orders", json={
            "merchant_id": wallet, "creator_id": f"c{worker}", "amount_fen": 1000}))
        if r.status_code != 201:
            continue
        stats.transitions += 1
        if (await stats.call("accept", client.post(f"/orders/{r.json()['id']}/accept", json={}))).status_code == 200:
            stats.transitions += 1


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu_seconds(db: str) -> float:
    """CPU time of the PostgreSQL backends connected to `db` (their process title names it), so
    that other databases' work on a shared server does not count."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if title.startswith("postgres: ") and f" {db} " in title:
                total += cpu_seconds(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return total


async def phase(name: str, worker, target, concurrency: int, seconds: float, server_pid: int) -> Stats:
    stats = Stats()
    deadline = time.perf_counter() + seconds
    cpu_before, pg_before = cpu_seconds(server_pid), backend_cpu_seconds(DB)
    started = time.perf_counter()
    await asyncio.gather(*(worker(target, stats, w, deadline) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu, pg = cpu_seconds(server_pid) - cpu_before, backend_cpu_seconds(DB) - pg_before
    print(f"\n{name} ({concurrency} clients, {elapsed:.1f} s)")
    for line in stats.summary(elapsed):
        print(line)
    if stats.transitions:
        print(f"  CPU per transition: server {cpu / stats.transitions * 1000:6.2f} ms, "
              f"PostgreSQL {pg / stats.transitions * 1000:6.2f} ms")
    stats.rate = stats.transitions / elapsed  # type: ignore[attr-defined]
    return stats


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--merchants", type=int, default=16)
    parser.add_argument("--py-spy", metavar="SVG", help="record a py-spy profile of the service during the create+accept "
                        "phase: a flame graph, or collapsed stacks if the name ends in .txt (needs py-spy in the venv)")
    args = parser.parse_args()

    url = await fresh_database()
    sa_url = url.replace("postgresql://", "postgresql+asyncpg://")
    # production settings (no test clock), with cheap password hashing for the accounts it makes
    env = {"LC_DATABASE_URL": sa_url, "LC_ENV": "production", "LC_SECRET_KEY": secrets.token_urlsafe(32),
           "LC_LOG_LEVEL": "WARNING",
           "LC_BOOTSTRAP_OPERATOR_USERNAME": "bench-operator", "LC_BOOTSTRAP_OPERATOR_PASSWORD": PASSWORD,
           "LC_ARGON2_TIME_COST": "1", "LC_ARGON2_MEMORY_COST_KIB": "1024"}
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env={**os.environ, **env}, check=True,
                   stdout=subprocess.DEVNULL)
    uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    service = start([*uvicorn, "app.main:app", "--port", "8101"], env)
    bare = start([*uvicorn, "bench.bare_app:app", "--port", "8102"], {"BENCH_DSN": url, "PYTHONPATH": str(ROOT)})
    try:
        await wait_ready(f"{SERVICE}/healthz")
        await wait_ready(f"{BARE}/health")
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        async with httpx.AsyncClient(base_url=SERVICE, limits=limits, timeout=30) as client, \
                httpx.AsyncClient(base_url=BARE, limits=limits, timeout=30) as bare_client:
            world = World(client)
            await world.build(args.merchants, args.concurrency)
            (await bare_client.post("/seed", json={"wallets": [f"w{i}" for i in range(40)],
                                                   "available_fen": 10**12})).raise_for_status()
            print(f"service pid {service.pid}, bare reference pid {bare.pid}; "
                  f"{args.merchants} merchants, {args.concurrency} creators")
            await phase("warm-up (service create+accept)", create_accept_worker, world, args.concurrency, 3,
                        service.pid)
            await phase("lifecycle: create → accept → live start → live end → approve", lifecycle_worker, world,
                        args.concurrency, args.seconds, service.pid)
            spy = None
            if args.py_spy:
                spy_format = "raw" if args.py_spy.endswith(".txt") else "flamegraph"
                spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-o", args.py_spy,
                                        "-f", spy_format, "-p", str(service.pid), "-d", str(int(args.seconds)),
                                        "-r", "200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            svc = await phase("service: create (freeze) + accept", create_accept_worker, world, args.concurrency,
                              args.seconds, service.pid)
            if spy:
                spy.wait()
            await phase("warm-up (bare)", bare_worker, bare_client, args.concurrency, 3, bare.pid)
            ref = await phase("bare asyncpg reference: create (freeze) + accept", bare_worker, bare_client,
                              args.concurrency, args.seconds, bare.pid)
        ratio = svc.rate / ref.rate if ref.rate else float("nan")  # type: ignore[attr-defined]
        print(f"\nratio service/bare (create+accept transitions/s): {ratio:.2f}  (target ≥ 0.50)")
        print(f"peak RSS: service {peak_rss_mib(service.pid):.0f} MiB, bare {peak_rss_mib(bare.pid):.0f} MiB")
        return 0
    finally:
        for proc in (service, bare):
            proc.send_signal(signal.SIGINT)
        for proc in (service, bare):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        await drop_database()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
