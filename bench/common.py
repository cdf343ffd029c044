"""What the bench scripts share: the PostgreSQL server they use, their own databases, the server
processes they start and what they measure of them (CPU, peak RSS, the PostgreSQL backends' CPU),
the accounts they make through the API, and the raw-ASGI helpers of the bare references. httpx is
imported where it is used: the bare references import this module and their RSS is measured."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
PASSWORD = "bench-password-1"  # every account's, the bootstrap operator's (`bench-operator`) too


def pg_url(db: str, driver: str = "postgresql") -> str:
    """The URL of database `db` on the bench server, for asyncpg or (driver) SQLAlchemy."""
    return PG.replace("postgresql://", f"{driver}://", 1).rstrip("/") + "/" + db


async def recreate_database(db: str, *, drop_only: bool = False) -> None:
    """Drop `db` (and create it again unless `drop_only`); never the shared `test` database."""
    import asyncpg

    if db == "test":
        raise SystemExit("refusing to touch the database `test`")
    conn = await asyncpg.connect(pg_url("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()


def migrate(db: str) -> None:
    env = dict(os.environ, LC_DATABASE_URL=pg_url(db, "postgresql+asyncpg"))
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


# -- server processes and what they cost ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A server process, its output in a file (a pipe nobody reads could fill up)."""
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


async def ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Wait for the server (migrating and importing take a while on a busy machine); `proc`, its
    process, if it runs in another one."""
    import asyncio

    import httpx

    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient() as client:
        while time.perf_counter() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout:g} s")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


# -- load through the service's API ---------------------------------------------------------------
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
        r = await self.client.post(
            "/v1/accounts",
            headers=op,
            json={"role": role, "username": username, "password": PASSWORD, "display_name": username, "profile": profile},
        )
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
            top_up = await self.client.post(
                "/v1/wallet/top-ups", headers=h, json={"amount_fen": 10**11, "method": "online", "reference": f"bench-{i}"}
            )
            top_up.raise_for_status()
            if top_up.json()["state"] == "pending":  # production: no instant gateway, an operator confirms
                (
                    await self.client.post(f"/v1/wallet/top-ups/{top_up.json()['id']}/confirm", headers=op, json={})
                ).raise_for_status()
            product = await self.client.post(
                "/v1/products",
                headers=h,
                json={
                    "title": f"Product {i}",
                    "brand": "B",
                    "price_fen": 9900,
                    "inventory": 10**6,
                    "general_commission_bp": 1000,
                },
            )
            product.raise_for_status()
            self.merchants.append((mid, product.json()["id"]))
        for i in range(creators):
            self.creators.append(
                await self.account(
                    op,
                    "creator",
                    f"bench-c{i}",
                    {
                        "nickname": f"Creator {i}",
                        "level": 3,
                        "accepting_orders": True,
                        "quotes": {"dedicated_hourly_fen": 1000, "shared_hourly_fen": 500},
                        "contact": {"phone": "13800138000"},
                    },
                )
            )


def order_body(creator_id: str, product_id: str, start: datetime) -> dict:
    """A task order's create body: one dedicated hour of `creator_id` for one product."""
    return {
        "title": "直播专场",
        "contact_name": "王经理",
        "contact_phone": "13900139000",
        "expected_start_at": start.isoformat(),
        "return_samples": False,
        "session_type": "dedicated",
        "hours": 1,
        "creator_id": creator_id,
        "products": [{"product_id": product_id, "plan": "general", "commission_bp": 1000}],
    }


# -- raw ASGI, for the bare references ----------------------------------------------------------
async def lifespan(receive, send, dsn: str, schema: str, use_pool) -> None:
    """Answer the ASGI lifespan protocol: open the pool and create the schema at startup (the
    pool is handed to `use_pool`), close the pool at shutdown."""
    import asyncpg

    pool = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            pool = await asyncpg.create_pool(dsn, min_size=5, max_size=20)
            async with pool.acquire() as conn:
                await conn.execute(schema)
            use_pool(pool)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive) -> dict:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    return json.loads(raw) if raw else {}


async def answer(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
