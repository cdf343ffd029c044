"""Stress and crash-safety run on PostgreSQL (issue #9, items 3 and 4).

    make stress          # or: .venv/bin/python bench/stress.py --seconds 180 --clients 50
    make stress-short    # 20 s, 20 clients, still with the SIGKILL and restart (CI runs this)

Two service processes on two ports, each running the in-service sweeper and the webhook relay,
no balancer: every client alternates between them. Concurrent clients fire random task-order,
wallet, outreach-quota, check-in, cooperation and binding actions while a background task moves
the test clock forward (hours every second or two), so acceptance timeouts, auto-approval,
top-up expiry, check-out at midnight, cooperation ends and quota weeks fire through the
sweepers. Mid-load one service process is killed with SIGKILL and restarted on the same port.

Afterwards (clients stopped, sweepers and relay drained, services stopped) it checks with SQL:
every ledger transaction balanced, money conserved, no negative balance, every hold ended
exactly once for terminal orders and never for the others, quota counters exact and within
limits, no creator in two active cooperations (also sampled during the load), and every event
of the outbox delivered to the webhook receiver this script runs. Any 5xx is a violation.
It prints the figures and exits 1 on any violation.

It creates and drops its own database (`--db`, default `lc_stress`); the maintenance
connection goes to the `postgres` database. Needs PostgreSQL (`STRESS_PG`, default
postgresql://postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("STRESS_PG", "postgresql://postgres@127.0.0.1:5432")
PASSWORD = "stress-password-1"
SHANGHAI = ZoneInfo("Asia/Shanghai")
OP_SECRET = "stress-operator-secret"
M0_SECRET = "stress-merchant-secret"
TERMINAL = ("completed", "cancelled_rejected", "cancelled_by_creator", "cancelled_by_merchant", "cancelled_timeout")
MERCHANT_REASONS = ["schedule_changed", "product_issue", "budget_changed", "creator_unresponsive"]
CREATOR_REASONS = ["schedule_changed", "merchant_unresponsive", "product_unsuitable", "health"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# =========================================================================== webhook receiver
class _Listener(ThreadingHTTPServer):
    """The harness's webhook receiver. The relay posts a batch of deliveries at once; the default
    listen backlog of 5 refused most of them (`connect_failed`, retried with back-off), so the
    drain measured the harness, not the relay."""

    request_queue_size = 256
    daemon_threads = True


class Receiver:
    """A tiny HTTP server in a thread: records the event ids POSTed to `/op` (the operator's `*`
    subscription) and `/m0` (merchant 0's `task_order.*`), checks `LC-Signature`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: dict[str, set[str]] = {"op": set(), "m0": set()}
        self.requests = 0
        self.duplicates = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.path.strip("/")
                secret = {"op": OP_SECRET, "m0": M0_SECRET}.get(name)
                ok = secret is not None and _verify(secret, self.headers.get("LC-Signature", ""), body)
                event_id = self.headers.get("LC-Event-Id", "")
                try:
                    payload_id = json.loads(body)["id"]
                except (ValueError, KeyError, TypeError):
                    payload_id = None
                with receiver.lock:
                    receiver.requests += 1
                    if not ok or payload_id != event_id:
                        receiver.bad_signatures += 1
                    elif event_id in receiver.events[name]:
                        receiver.duplicates += 1
                    else:
                        receiver.events[name].add(event_id)
                self.send_response(200 if ok else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = _Listener(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, name: str) -> set[str]:
        with self.lock:
            return set(self.events[name])


def _verify(secret: str, header: str, body: bytes) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > 300:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


# =========================================================================== service processes
try:
    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc Linux: the finally blocks still stop the services
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if this script dies, however it dies."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Service:
    def __init__(self, name: str, port: int, env: dict[str, str], logdir: Path) -> None:
        self.name, self.port, self.env, self.logdir = name, port, env, logdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        path = self.logdir / f"{self.name}-{self.starts}.log"
        self.logs.append(path)
        with path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    async def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.logs[-1]}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not come up on {self.url}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def deadlocks(self) -> int:
        """`deadlock detected` anywhere in the processes' logs (also inside a WARNING's traceback)."""
        return sum(path.read_text(errors="replace").count("deadlock detected") for path in self.logs if path.exists())

    def log_problems(self) -> list[str]:
        """ERROR lines the processes logged (JSON logs): unhandled errors, failed jobs/timers."""
        lines = []
        for path in self.logs:
            if path.exists():
                for line in path.read_text(errors="replace").splitlines():
                    if '"ERROR"' in line or '"CRITICAL"' in line or line.startswith("Traceback"):
                        lines.append(line)
        return lines


# =========================================================================== statistics
@dataclass
class Stats:
    status: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    codes: Counter = field(default_factory=Counter)  # "409 invalid_transition" …
    transport_errors: Counter = field(default_factory=Counter)
    retried: int = 0
    unknown_outcome: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    by_action: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def record(self, name: str, response: httpx.Response, seconds: float) -> None:
        self.status[name][response.status_code] += 1
        self.latencies.append(seconds)
        self.by_action[name].append(seconds)
        if response.status_code >= 400:
            try:
                code = response.json().get("code", "?")
            except ValueError:
                code = "?"
            self.codes[f"{response.status_code} {code}"] += 1
        if response.status_code >= 500 and len(self.server_errors) < 50:
            self.server_errors.append(f"{name}: {response.status_code} {response.text[:300]}")

    def totals(self) -> Counter:
        out: Counter = Counter()
        for counter in self.status.values():
            for status, n in counter.items():
                out[f"{status // 100}xx"] += n
        return out


class Api:
    """Alternates between the two processes. A request that never reached a process
    (connection refused) is retried on the other one; one whose outcome is unknown (the process
    died with it) is retried once on the other process with the same `Idempotency-Key`."""

    def __init__(self, urls: list[str], stats: Stats) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self.clients = [httpx.AsyncClient(base_url=u, timeout=60, limits=limits) for u in urls]
        self.stats = stats
        self.turn = 0

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()

    async def call(
        self, name: str, method: str, path: str, headers: dict[str, str] | None = None, **kwargs
    ) -> httpx.Response | None:
        headers = dict(headers or {})
        if method == "POST" and "data" not in kwargs:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        self.turn += 1
        first = self.turn % len(self.clients)
        order = [first, *[i for i in range(len(self.clients)) if i != first]]
        sent = False
        for index in order:
            started = time.perf_counter()
            try:
                response = await self.clients[index].request(method, path, headers=headers, **kwargs)
            except httpx.ConnectError:
                self.stats.transport_errors[f"{name} connect"] += 1
                continue
            except httpx.TransportError as exc:
                self.stats.transport_errors[f"{name} {type(exc).__name__}"] += 1
                sent = True
                self.stats.retried += 1
                continue
            # The first attempt may still hold its key (its transaction waits on a lock before
            # PostgreSQL notices the dead client, or it is still running): wait for its outcome.
            for _ in range(10):
                if not (sent and response.status_code == 409 and _code(response) == "idempotency_key_in_use"):
                    break
                await asyncio.sleep(1.0)
                try:
                    response = await self.clients[index].request(method, path, headers=headers, **kwargs)
                except httpx.TransportError:
                    break
            self.stats.record(name, response, time.perf_counter() - started)
            if sent and _code(response) == "idempotency_key_in_use":
                break  # still unknown
            return response
        if sent:
            self.stats.unknown_outcome[name] += 1
        return None


def _code(response: httpx.Response) -> str | None:
    try:
        return response.json().get("code")
    except ValueError:
        return None


# =========================================================================== the world
@dataclass
class Order:
    id: str
    merchant: str
    creator: str
    start: datetime
    amount: int


@dataclass
class World:
    op: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] = field(default_factory=dict)
    data_as_of: list[str] = field(default_factory=list)  # X-Data-As-Of of the heavy reads answered
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    merchants: list[str] = field(default_factory=list)
    products: dict[str, list[str]] = field(default_factory=dict)
    creators: list[str] = field(default_factory=list)
    creators_with_wechat: set[str] = field(default_factory=set)
    agencies: list[str] = field(default_factory=list)
    bases: dict[str, str] = field(default_factory=dict)  # base id -> agency id
    leaders: list[str] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    sessions: list[tuple[str, str, datetime]] = field(default_factory=list)  # (external id, host, started)
    disputes: list[str] = field(default_factory=list)
    pending_top_ups: list[str] = field(default_factory=list)
    check_ins: list[tuple[str, str, str]] = field(default_factory=list)  # (id, creator, agency)
    cooperations: list[tuple[str, str, str, str]] = field(default_factory=list)  # (id, creator, agency, base)
    bindings: list[tuple[str, str, str]] = field(default_factory=list)  # (id, agency, creator)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # outreach bookkeeping for the quota check: account -> [ok answers, unknown outcomes]
    contact_views: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    conversations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    since_ids: dict[str, str] = field(default_factory=dict)
    clock_advances: int = 0
    clock_moved: int = 0
    timers_fired_by_clock: int = 0


async def login(api: Api, username: str) -> dict[str, str]:
    r = await api.call("login", "POST", "/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert r is not None and r.status_code == 200, r and r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def account(api: Api, world: World, role: str, username: str, profile: dict) -> str:
    r = await api.call(
        "setup",
        "POST",
        "/v1/accounts",
        world.op,
        json={"role": role, "username": username, "password": PASSWORD, "display_name": username, "profile": profile},
    )
    assert r is not None and r.status_code == 201, r and r.text
    account_id = r.json()["id"]
    world.tokens[account_id] = await login(api, username)
    return account_id


def ok(r: httpx.Response | None, *statuses: int) -> bool:
    return r is not None and r.status_code in (statuses or (200, 201))


async def build(api: Api, world: World, args: argparse.Namespace, receiver_url: str, rng: random.Random) -> None:
    world.op = await login(api, "stress-operator")
    platform_id = await account(api, world, "platform", "stress-platform", {})
    world.platform = world.tokens[platform_id]
    # Subscriptions first, so every event of the run is to be delivered.
    r = await api.call(
        "setup", "POST", "/v1/webhooks", world.op, json={"url": f"{receiver_url}/op", "event_types": ["*"], "secret": OP_SECRET}
    )
    assert ok(r, 201), r and r.text
    world.since_ids["op"] = r.json()["id"]
    gate = asyncio.Semaphore(8)

    async def merchant(i: int) -> None:
        async with gate:
            mid = await account(
                api,
                world,
                "merchant",
                f"stress-m{i}",
                {"shop_name": f"Stress Shop {i}", "alliance_member": i % 5 != 4, "experience_score": "4.50"},
            )
            h = world.tokens[mid]
            assert ok(await api.call("setup", "POST", "/v1/xingtu-binding", h, json={}))
            assert ok(
                await api.call(
                    "setup",
                    "POST",
                    "/v1/wallet/top-ups",
                    h,
                    json={"amount_fen": rng.choice([20_000, 100_000, 500_000]), "method": "online", "reference": f"seed-{i}"},
                )
            )
            products = []
            for k in range(2):
                r = await api.call(
                    "setup",
                    "POST",
                    "/v1/products",
                    h,
                    json={
                        "title": f"Product {i}-{k}",
                        "brand": "Brand",
                        "price_fen": 9900,
                        "inventory": 10**6,
                        "general_commission_bp": 1000,
                    },
                )
                assert ok(r, 201), r and r.text
                products.append(r.json()["id"])
            world.products[mid] = products
            if i == 0:
                r = await api.call(
                    "setup",
                    "POST",
                    "/v1/webhooks",
                    h,
                    json={"url": f"{receiver_url}/m0", "event_types": ["task_order.*"], "secret": M0_SECRET},
                )
                assert ok(r, 201), r and r.text
            world.merchants.append(mid)

    async def creator(i: int) -> None:
        contact: dict[str, str] = {"phone": f"138{i:08d}"}
        if i % 3:
            contact["wechat"] = f"wx_stress_{i}"
        async with gate:
            cid = await account(
                api,
                world,
                "creator",
                f"stress-c{i}",
                {
                    "nickname": f"Creator {i}",
                    "level": rng.choice([1, 2, 3, 4, 4, 5, 6]),
                    "accepting_orders": i % 10 != 9,
                    "quotes": {
                        "dedicated_hourly_fen": rng.choice([1000, 2500, 5000]),
                        "shared_hourly_fen": None if i % 4 == 0 else 800,
                    },
                    "contact": contact,
                },
            )
        world.creators.append(cid)
        if "wechat" in contact:
            world.creators_with_wechat.add(cid)

    async def agency(i: int) -> None:
        async with gate:
            aid = await account(api, world, "agency", f"stress-a{i}", {"name": f"Agency {i}", "head_annual": i % 2 == 0})
            for k in range(2):
                r = await api.call(
                    "setup",
                    "POST",
                    "/v1/live-bases",
                    world.tokens[aid],
                    json={"name": f"Base {i}-{k}", "address": f"Hangzhou {i}-{k}"},
                )
                assert ok(r, 201), r and r.text
                world.bases[r.json()["id"]] = aid
        world.agencies.append(aid)

    async def leader(i: int) -> None:
        async with gate:
            world.leaders.append(await account(api, world, "group_leader", f"stress-g{i}", {"name": f"Leader {i}"}))

    await asyncio.gather(
        *(merchant(i) for i in range(args.merchants)),
        *(creator(i) for i in range(args.creators)),
        *(agency(i) for i in range(args.agencies)),
        *(leader(i) for i in range(2)),
    )
    # Start three hours before a quota week ends (Monday 00:00 Asia/Shanghai), so the run crosses
    # it early; a tighter quota policy applies from that Monday, so quotas run out often.
    r = await api.call("setup", "GET", "/v1/admin/clock", world.op)
    assert ok(r), r and r.text
    now = datetime.fromisoformat(r.json()["now"])
    local = now.astimezone(SHANGHAI)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    monday += timedelta(days=7)
    jump = int((monday - timedelta(hours=3) - now).total_seconds())
    if jump > 0:
        r = await api.call("setup", "POST", "/v1/admin/clock/advance", world.op, json={"seconds": jump})
        assert ok(r), r and r.text
    r = await api.call(
        "setup",
        "PUT",
        "/v1/admin/quota-policy",
        world.op,
        json={
            "merchant_tiers": [
                {"min_last_week_gmv_fen": 0, "conversations": 6, "contact_views": 4},
                {"min_last_week_gmv_fen": 1_000_000, "conversations": 12, "contact_views": 8},
            ],
            "creator_tiers": [{"min_level": 0, "conversations": 3}, {"min_level": 4, "conversations": 6}],
            "fixed": {"agency_to_creator": 8, "group_leader_to_creator": 10, "group_leader_to_merchant": 5},
        },
    )
    assert ok(r), r and r.text
    r = await api.call("setup", "GET", "/v1/admin/clock", world.op)
    assert ok(r), r and r.text
    world.now = datetime.fromisoformat(r.json()["now"])


# =========================================================================== actions
def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Client:
    def __init__(self, api: Api, world: World, rng: random.Random) -> None:
        self.api, self.w, self.rng = api, world, rng

    def h(self, account_id: str) -> dict[str, str]:
        return self.w.tokens[account_id]

    def pick(self, items: list):
        return items[self.rng.randrange(len(items))] if items else None

    def recent(self, items: list, window: int = 200):
        """Mostly recent items (where actions are still allowed), sometimes any."""
        if not items:
            return None
        if self.rng.random() < 0.85:
            return items[self.rng.randrange(max(0, len(items) - window), len(items))]
        return self.pick(items)

    # -- task orders ---------------------------------------------------------------------------
    async def create_order(self) -> None:
        merchant = self.pick(self.w.merchants)
        creator = self.pick(self.w.creators)
        start = minute(self.w.now + timedelta(minutes=self.rng.randint(90, 60 * 40)))
        hours = self.rng.randint(1, 3)
        products = self.rng.sample(self.w.products[merchant], self.rng.randint(1, 2))
        body = {
            "title": "压测专场",
            "contact_name": "王经理",
            "contact_phone": "13900139000",
            "expected_start_at": start.isoformat(),
            "return_samples": False,
            "session_type": self.rng.choice(["dedicated", "dedicated", "shared"]),
            "hours": hours,
            "creator_id": creator,
            "products": [
                {"product_id": p, "plan": self.rng.choice(["general", "targeted"]), "commission_bp": 1000} for p in products
            ],
        }
        r = await self.api.call("order.create", "POST", "/v1/task-orders", self.h(merchant), json=body)
        if ok(r, 201):
            data = r.json()
            self.w.orders.append(Order(data["id"], merchant, creator, start, data["amount_fen"]))

    async def order_action(self) -> None:
        order: Order | None = self.recent(self.w.orders)
        if order is None:
            return
        roll = self.rng.random()
        path = f"/v1/task-orders/{order.id}"
        if roll < 0.30:
            await self.api.call("order.accept", "POST", f"{path}/accept", self.h(order.creator), json={})
        elif roll < 0.36:
            await self.api.call("order.reject", "POST", f"{path}/reject", self.h(order.creator), json={"reason": "档期冲突"})
        elif roll < 0.42:
            await self.api.call("order.remind", "POST", f"{path}/remind", self.h(order.merchant), json={})
        elif roll < 0.50:
            await self.api.call(
                "order.cancel_merchant",
                "POST",
                f"{path}/cancel",
                self.h(order.merchant),
                json={"reason": {"code": self.pick(MERCHANT_REASONS)}},
            )
        elif roll < 0.55:
            await self.api.call(
                "order.cancel_creator",
                "POST",
                f"{path}/cancel",
                self.h(order.creator),
                json={"reason": {"code": self.pick(CREATOR_REASONS)}},
            )
        elif roll < 0.75:
            await self.live_start(order)
        elif roll < 0.90:
            await self.api.call("order.approve", "POST", f"{path}/approve", self.h(order.merchant), json={})
        else:
            who = order.merchant if self.rng.random() < 0.5 else order.creator
            await self.api.call("order.get", "GET", path, self.h(who))

    async def live_start(self, order: Order) -> None:
        started = order.start + timedelta(minutes=self.rng.randint(-60, 60))
        external = f"ls-{uuid.uuid4().hex[:16]}"
        r = await self.api.call(
            "live.start",
            "POST",
            "/v1/ingest/live-sessions",
            self.w.platform,
            json={
                "external_id": external,
                "host_id": order.creator,
                "started_at": started.isoformat(),
                "peak_viewers": 100,
                "room_url": "https://live.example/room",
            },
        )
        if ok(r):
            self.w.sessions.append((external, order.creator, started))

    async def live_end(self) -> None:
        if not self.w.sessions:
            return
        external, host, started = self.w.sessions.pop(self.rng.randrange(len(self.w.sessions)))
        await self.api.call(
            "live.end",
            "POST",
            "/v1/ingest/live-sessions",
            self.w.platform,
            json={
                "external_id": external,
                "host_id": host,
                "started_at": started.isoformat(),
                "ended_at": (started + timedelta(hours=1)).isoformat(),
                "peak_viewers": 120,
                "room_url": "https://live.example/room",
            },
        )

    async def dispute(self) -> None:
        order: Order | None = self.recent(self.w.orders, 400)
        if order is None:
            return
        who = order.merchant if self.rng.random() < 0.5 else order.creator
        r = await self.api.call(
            "dispute.open", "POST", f"/v1/task-orders/{order.id}/disputes", self.h(who), json={"reason": "结算有争议"}
        )
        if ok(r, 201):
            self.w.disputes.append(r.json()["id"])

    async def dispute_decide(self) -> None:
        if not self.w.disputes:
            return
        dispute_id = self.w.disputes.pop(self.rng.randrange(len(self.w.disputes)))
        r = await self.api.call("dispute.get", "GET", f"/v1/disputes/{dispute_id}", self.w.op)
        if not ok(r):
            return
        amount = r.json()["amount_fen"]
        if self.rng.random() < 0.8:
            await self.api.call(
                "dispute.resolve",
                "POST",
                f"/v1/disputes/{dispute_id}/resolve",
                self.w.op,
                json={"creator_share_fen": self.rng.randint(0, amount), "note": "裁定"},
            )
        else:
            opener = r.json()["opened_by"]
            await self.api.call("dispute.withdraw", "POST", f"/v1/disputes/{dispute_id}/withdraw", self.h(opener), json={})

    async def list_orders(self) -> None:
        who = self.pick(self.w.merchants + self.w.creators)
        await self.api.call("order.list", "GET", "/v1/task-orders", self.h(who), params={"limit": 20})

    # -- wallet ------------------------------------------------------------------------------
    async def top_up(self) -> None:
        merchant = self.pick(self.w.merchants)
        method = self.rng.choice(["online", "bank_transfer"])
        r = await self.api.call(
            f"wallet.top_up_{method}",
            "POST",
            "/v1/wallet/top-ups",
            self.h(merchant),
            json={"amount_fen": self.rng.choice([5_000, 20_000, 100_000]), "method": method, "reference": "stress"},
        )
        if ok(r, 201) and r.json()["state"] == "pending":
            self.w.pending_top_ups.append(r.json()["id"])

    async def decide_top_up(self) -> None:
        if not self.w.pending_top_ups:
            return
        top_up = self.w.pending_top_ups.pop(self.rng.randrange(len(self.w.pending_top_ups)))
        action = "confirm" if self.rng.random() < 0.6 else "reject"
        await self.api.call(f"wallet.top_up_{action}", "POST", f"/v1/wallet/top-ups/{top_up}/{action}", self.w.op, json={})

    async def wallet(self) -> None:
        who = self.pick(self.w.merchants + self.w.creators)
        await self.api.call("wallet.get", "GET", "/v1/wallet", self.h(who))

    async def export_top_ups(self) -> None:
        """A heavy read (on the replica with --db-replica): the recharge history file."""
        who = self.pick(self.w.merchants)
        r = await self.api.call("wallet.export_top_ups", "GET", "/v1/wallet/top-ups/export", self.h(who))
        if r is not None and r.status_code == 200:
            self.w.data_as_of.append(r.headers.get("x-data-as-of", ""))

    # -- outreach ----------------------------------------------------------------------------
    async def open_conversation(self) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            me, other = self.pick(self.w.merchants), self.pick(self.w.creators)
        elif roll < 0.7:
            me, other = self.pick(self.w.creators), self.pick(self.w.merchants)
        elif roll < 0.85:
            me, other = self.pick(self.w.agencies), self.pick(self.w.creators)
        else:
            me, other = self.pick(self.w.leaders), self.pick(self.w.creators + self.w.merchants)
        r = await self.api.call("outreach.open", "POST", "/v1/conversations", self.h(me), json={"counterpart_id": other})
        if r is None or r.status_code >= 500:
            self.w.conversations[me][1] += 1
        elif r.status_code == 201:
            self.w.conversations[me][0] += 1
            if self.rng.random() < 0.5:
                await self.api.call(
                    "outreach.message",
                    "POST",
                    f"/v1/conversations/{r.json()['id']}/messages",
                    self.h(me),
                    json={"text": "你好，合作一下？"},
                )

    async def contact_view(self) -> None:
        merchant = self.pick(self.w.merchants)
        creator = self.pick(self.w.creators)
        r = await self.api.call(
            "outreach.contact_view",
            "POST",
            f"/v1/creators/{creator}/contact-views",
            self.h(merchant),
            json={"field": self.rng.choice(["phone", "wechat"])},
        )
        if r is None or r.status_code >= 500:
            self.w.contact_views[merchant][1] += 1
        elif r.status_code == 200:
            self.w.contact_views[merchant][0] += 1

    async def quotas(self) -> None:
        who = self.pick(self.w.merchants + self.w.creators + self.w.agencies)
        await self.api.call("outreach.quotas", "GET", "/v1/quotas/me", self.h(who))

    async def sales(self) -> None:
        merchant = self.pick(self.w.merchants)
        product = self.pick(self.w.products[merchant])
        orders = [
            {
                "external_id": f"so-{uuid.uuid4().hex[:20]}",
                "shop_id": merchant,
                "product_id": product,
                "creator_id": self.pick(self.w.creators),
                "channel": "live",
                "live_session_id": None,
                "amount_fen": self.rng.choice([9900, 99_000, 990_000]),
                "status": "paid",
                "paid_at": (self.w.now - timedelta(minutes=5)).isoformat(),
            }
            for _ in range(self.rng.randint(1, 5))
        ]
        await self.api.call("ingest.orders", "POST", "/v1/ingest/orders", self.w.platform, json={"orders": orders})

    # -- live bases ----------------------------------------------------------------------------
    async def check_in(self) -> None:
        base = self.pick(list(self.w.bases))
        agency = self.w.bases[base]
        creator = self.pick(self.w.creators)
        r = await self.api.call("base.code", "GET", f"/v1/live-bases/{base}/check-in-code", self.h(agency))
        if not ok(r):
            return
        r = await self.api.call("checkin.scan", "POST", "/v1/check-ins", self.h(creator), json={"token": r.json()["token"]})
        if not ok(r, 201):
            return
        check_in = r.json()
        if check_in["state"] == "pending_confirmation" and self.rng.random() < 0.9:
            r = await self.api.call(
                "checkin.confirm", "POST", f"/v1/check-ins/{check_in['id']}/confirm", self.h(creator), json={}
            )
            if ok(r) and r.json()["state"] == "checked_in":
                self.w.check_ins.append((check_in["id"], creator, agency))
                if r.json().get("cooperation_id"):
                    self.w.cooperations.append((r.json()["cooperation_id"], creator, agency, base))

    async def check_out(self) -> None:
        item = self.recent(self.w.check_ins, 50)
        if item is None:
            return
        check_in, creator, agency = item
        who = creator if self.rng.random() < 0.6 else agency
        await self.api.call("checkin.check_out", "POST", f"/v1/check-ins/{check_in}/check-out", self.h(who), json={})

    async def terminate_cooperation(self) -> None:
        item = self.recent(self.w.cooperations, 50)
        if item is None:
            return
        cooperation, creator, agency, _ = item
        who = creator if self.rng.random() < 0.5 else agency
        await self.api.call(
            "cooperation.terminate", "POST", f"/v1/cooperations/{cooperation}/terminate", self.h(who), json={"reason": "压测"}
        )

    async def race_check_in(self) -> None:
        """A creator confirms a new check-in at a base while its cooperation with that base is
        being terminated: the check-in must not stay present under an ended cooperation."""
        item = self.recent(self.w.cooperations, 30)
        if item is None:
            return
        cooperation, creator, agency, base = item
        r = await self.api.call("base.code", "GET", f"/v1/live-bases/{base}/check-in-code", self.h(agency))
        if not ok(r):
            return
        r = await self.api.call("race.checkin_scan", "POST", "/v1/check-ins", self.h(creator), json={"token": r.json()["token"]})
        if not ok(r, 201) or r.json()["state"] != "pending_confirmation":
            return
        who = creator if self.rng.random() < 0.5 else agency
        await asyncio.gather(
            self.api.call("race.checkin_confirm", "POST", f"/v1/check-ins/{r.json()['id']}/confirm", self.h(creator), json={}),
            self.api.call(
                "race.cooperation_terminate", "POST", f"/v1/cooperations/{cooperation}/terminate", self.h(who), json={}
            ),
        )

    async def race_order(self) -> None:
        """Two parties act on one fresh order at once: exactly one transition wins."""
        order: Order | None = self.recent(self.w.orders, 20)
        if order is None:
            return
        path = f"/v1/task-orders/{order.id}"
        await asyncio.gather(
            self.api.call("race.order_accept", "POST", f"{path}/accept", self.h(order.creator), json={}),
            self.api.call(
                "race.order_cancel", "POST", f"{path}/cancel", self.h(order.merchant), json={"reason": {"code": "budget_changed"}}
            ),
            self.api.call("race.order_reject", "POST", f"{path}/reject", self.h(order.creator), json={}),
        )

    async def binding(self) -> None:
        roll = self.rng.random()
        if roll < 0.4 or not self.w.bindings:
            agency, creator = self.pick(self.w.agencies), self.pick(self.w.creators)
            r = await self.api.call(
                "binding.invite",
                "POST",
                "/v1/creator-bindings",
                self.h(agency),
                json={"creator_id": creator, "commission_bp": 500},
            )
            if ok(r, 201):
                self.w.bindings.append((r.json()["id"], agency, creator))
            return
        binding, agency, creator = self.recent(self.w.bindings, 50)
        if roll < 0.75:
            await self.api.call("binding.accept", "POST", f"/v1/creator-bindings/{binding}/accept", self.h(creator), json={})
        elif roll < 0.85:
            await self.api.call("binding.decline", "POST", f"/v1/creator-bindings/{binding}/decline", self.h(creator), json={})
        else:
            who = creator if self.rng.random() < 0.5 else agency
            await self.api.call("binding.terminate", "POST", f"/v1/creator-bindings/{binding}/terminate", self.h(who), json={})

    async def one(self) -> None:
        actions = [
            (self.create_order, 14),
            (self.order_action, 30),
            (self.live_end, 6),
            (self.dispute, 3),
            (self.dispute_decide, 2),
            (self.list_orders, 3),
            (self.top_up, 3),
            (self.decide_top_up, 2),
            (self.wallet, 2),
            (self.export_top_ups, 1),
            (self.open_conversation, 8),
            (self.contact_view, 6),
            (self.quotas, 2),
            (self.sales, 2),
            (self.check_in, 8),
            (self.check_out, 2),
            (self.terminate_cooperation, 2),
            (self.binding, 4),
            (self.race_check_in, 2),
            (self.race_order, 2),
        ]
        action = self.rng.choices([a for a, _ in actions], weights=[w for _, w in actions])[0]
        await action()


async def client_loop(client: Client, deadline: float) -> None:
    while time.monotonic() < deadline:
        await client.one()


# =========================================================================== background tasks
async def clock_loop(
    api: Api, world: World, business_seconds: float, load_seconds: float, interval: float, deadline: float
) -> None:
    """Moves business time at a steady rate (`business_seconds` over the load), whatever the
    advance calls cost: each step is what the rate owes since the last one."""
    rate = business_seconds / load_seconds
    last = time.monotonic()
    owed = 0.0
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        moment = time.monotonic()
        owed += rate * (moment - last)
        last = moment
        step = int(owed)
        r = await api.call("clock.advance", "POST", "/v1/admin/clock/advance", world.op, json={"seconds": step})
        if ok(r):
            owed -= step
            world.now = datetime.fromisoformat(r.json()["now"])
            world.clock_advances += 1
            world.clock_moved += step
            world.timers_fired_by_clock += r.json()["fired"]


SAMPLE_SQL = {
    # no creator in two active cooperations (an `active` row past `ends_at` awaits its timer)
    "creator in two active cooperations": """
        SELECT count(*) FROM (
          SELECT creator_id FROM cooperations, clock_state
          WHERE state = 'active' AND clock_state.id = 1
            AND ends_at > now() + make_interval(secs => clock_state.offset_seconds)
          GROUP BY creator_id HAVING count(*) > 1) x""",
    # a creator present at a base whose cooperation has ended
    "checked in under an ended cooperation": """
        SELECT count(*) FROM check_ins c JOIN cooperations o ON o.id = c.cooperation_id
        WHERE c.state = 'checked_in' AND o.state <> 'active'""",
    # money: every wallet's available + frozen sums to zero at any commit point
    "money not conserved (sum of wallets)": "SELECT abs(coalesce(sum(available_fen + frozen_fen), 0)) FROM wallets",
    "negative balance": "SELECT count(*) FROM wallets WHERE owner_id <> 'external' AND (available_fen < 0 OR frozen_fen < 0)",
    "quota over its limit": "SELECT count(*) FROM outreach_quotas WHERE used > quota_limit OR used < 0",
}


async def sampler(dsn: str, deadline: float, found: Counter, samples: list[int]) -> None:
    """Consistent snapshots of the invariants that must hold at every commit point."""
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() < deadline:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                for name, sql in SAMPLE_SQL.items():
                    value = await conn.fetchval(sql)
                    if value:
                        found[name] += 1
            samples[0] += 1
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def killer(services: list[Service], at: float, restart_after: float, events: list[str]) -> None:
    await asyncio.sleep(at)
    victim = services[0]
    pid = victim.proc.pid if victim.proc else None
    victim.kill()
    events.append(f"SIGKILL {victim.name} (pid {pid}) at +{at:.0f} s")
    log(events[-1])
    await asyncio.sleep(restart_after)
    victim.start()
    await victim.ready()
    events.append(f"restarted {victim.name} (pid {victim.proc.pid}) on :{victim.port} after {restart_after:.0f} s")
    log(events[-1])


# =========================================================================== checks
@dataclass
class Report:
    figures: list[tuple[str, object]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def figure(self, name: str, value: object) -> None:
        self.figures.append((name, value))

    def check(self, name: str, bad: int | bool, detail: str = "") -> None:
        if bad:
            self.violations.append(f"{name}: {bad}{' — ' + detail if detail else ''}")


async def events_not_received(conn: asyncpg.Connection, receiver: Receiver, world: World) -> dict[str, list[str]]:
    subs = {
        r["url"].rsplit("/", 1)[-1]: r
        for r in await conn.fetch("SELECT id, url, since_event_id, account_id FROM webhook_subscriptions")
    }
    missing: dict[str, list[str]] = {}
    op = subs["op"]
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM events WHERE id > $1", op["since_event_id"])]
    got = receiver.received("op")
    missing["op"] = [i for i in ids if i not in got]
    m0 = subs["m0"]
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT e.id FROM events e JOIN event_recipients r ON r.event_id = e.id "
            "WHERE e.id > $1 AND r.account_id = $2 AND e.type LIKE 'task\\_order.%'",
            m0["since_event_id"],
            m0["account_id"],
        )
    ]
    got = receiver.received("m0")
    missing["m0"] = [i for i in ids if i not in got]
    return missing


async def drain(dsn: str, receiver: Receiver, world: World, timeout: float) -> tuple[float, dict[str, list[str]]]:
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            missing = await events_not_received(conn, receiver, world)
            pending = await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            if not any(missing.values()) and not pending:
                return time.monotonic() - started, missing
            if time.monotonic() - started > timeout:
                return time.monotonic() - started, missing
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def check_database(dsn: str, receiver: Receiver, world: World, report: Report, missing: dict[str, list[str]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        q = conn.fetchval
        # -- the ledger ----------------------------------------------------------------------------
        report.figure("ledger transactions", await q("SELECT count(*) FROM ledger_transactions"))
        report.figure("ledger lines", await q("SELECT count(*) FROM ledger_lines"))
        report.check(
            "unbalanced ledger transactions",
            await q("SELECT count(*) FROM (SELECT transaction_id FROM ledger_lines GROUP BY 1 HAVING sum(amount_fen) <> 0) x"),
        )
        report.check(
            "ledger transactions without lines",
            await q(
                "SELECT count(*) FROM ledger_transactions t WHERE NOT EXISTS "
                "(SELECT 1 FROM ledger_lines l WHERE l.transaction_id = t.id)"
            ),
        )
        report.check(
            "sum of all wallets is not zero", await q("SELECT coalesce(sum(available_fen + frozen_fen), 0) FROM wallets")
        )
        report.check(
            "wallet differs from the sum of its ledger lines",
            await q("""
            SELECT count(*) FROM wallets w LEFT JOIN (
              SELECT wallet_id, sum(amount_fen) FILTER (WHERE bucket = 'available') a,
                     sum(amount_fen) FILTER (WHERE bucket = 'frozen') f FROM ledger_lines GROUP BY 1) s
              ON s.wallet_id = w.id
            WHERE w.available_fen <> coalesce(s.a, 0) OR w.frozen_fen <> coalesce(s.f, 0)"""),
        )
        inflow = int(await q("SELECT coalesce(sum(amount_fen), 0) FROM top_ups WHERE state = 'succeeded'"))
        external = await q("SELECT coalesce(available_fen + frozen_fen, 0) FROM wallets WHERE owner_id = 'external'")
        report.figure("money brought in by succeeded top-ups (fen)", int(inflow))
        report.check(
            "external wallet is not minus the succeeded top-ups",
            (external or 0) + inflow,
            f"external {external}, top-ups {inflow}",
        )
        report.check(
            "succeeded top-ups without exactly one funding transaction",
            await q("""
            SELECT count(*) FROM top_ups t WHERE (t.state = 'succeeded') <> (
              (SELECT count(*) FROM ledger_transactions x WHERE x.kind = 'top_up' AND x.ref_id = t.id) = 1)"""),
        )
        report.check(
            "funding transactions not of a succeeded top-up",
            await q("""
            SELECT count(*) FROM ledger_transactions x WHERE x.kind = 'top_up' AND NOT EXISTS
              (SELECT 1 FROM top_ups t WHERE t.id = x.ref_id AND t.state = 'succeeded')"""),
        )
        report.check(
            "negative available or frozen balance",
            await q("SELECT count(*) FROM wallets WHERE owner_id <> 'external' AND (available_fen < 0 OR frozen_fen < 0)"),
        )
        report.check(
            "frozen balance differs from the open holds",
            await q("""
            SELECT count(*) FROM wallets w WHERE w.owner_id <> 'external' AND w.frozen_fen <>
              (SELECT coalesce(sum(amount_fen), 0) FROM holds h WHERE h.payer_id = w.owner_id AND h.status = 'held')"""),
        )
        # -- holds of task orders --------------------------------------------------------------------
        states = dict(await conn.fetch("SELECT state, count(*) FROM task_orders GROUP BY 1"))
        report.figure("task orders by state", dict(sorted(states.items())))
        report.check(
            "task orders without exactly one hold",
            await q("""
            SELECT count(*) FROM task_orders o WHERE (SELECT count(*) FROM holds h WHERE h.ref_id = o.id) <> 1"""),
        )
        report.check(
            "hold amount differs from the order amount",
            await q("SELECT count(*) FROM task_orders o JOIN holds h ON h.ref_id = o.id WHERE h.amount_fen <> o.amount_fen"),
        )
        report.check(
            "terminal order whose hold is still held",
            await q(
                "SELECT count(*) FROM task_orders o JOIN holds h ON h.ref_id = o.id "
                "WHERE o.state = ANY($1::text[]) AND h.status = 'held'",
                list(TERMINAL),
            ),
        )
        report.check(
            "active order whose hold ended",
            await q(
                "SELECT count(*) FROM task_orders o JOIN holds h ON h.ref_id = o.id "
                "WHERE NOT (o.state = ANY($1::text[])) AND h.status <> 'held'",
                list(TERMINAL),
            ),
        )
        report.check(
            "order without exactly one freeze transaction",
            await q("""
            SELECT count(*) FROM task_orders o WHERE (SELECT count(*) FROM ledger_transactions x
              WHERE x.ref_id = o.id AND x.kind = 'freeze') <> 1"""),
        )
        report.check(
            "hold not ended exactly once (settlement transactions per order)",
            await q(
                """
            SELECT count(*) FROM task_orders o WHERE (SELECT count(*) FROM ledger_transactions x
              WHERE x.ref_id = o.id AND x.ref_type = 'task_order' AND x.kind IN ('paid', 'released', 'split'))
              <> CASE WHEN o.state = ANY($1::text[]) THEN 1 ELSE 0 END""",
                list(TERMINAL),
            ),
        )
        report.check(
            "settlement differs from the rule of the end state",
            await q("""
            SELECT count(*) FROM task_orders o JOIN holds h ON h.ref_id = o.id WHERE h.status <> 'held' AND
              h.payee_fen <> CASE WHEN o.state = 'completed' THEN o.amount_fen
                                  WHEN o.state = 'cancelled_by_merchant' THEN o.compensation_fen ELSE 0 END"""),
        )
        report.check(
            "creator_received_fen differs from settlement + dispute resolution",
            await q("""
            SELECT count(*) FROM task_orders o JOIN holds h ON h.ref_id = o.id WHERE o.creator_received_fen <>
              coalesce((SELECT d.creator_share_fen FROM disputes d WHERE d.task_order_id = o.id
                        AND d.state = 'resolved'), h.payee_fen, 0)"""),
        )
        report.check(
            "resolved dispute without its adjustment transaction",
            await q("""
            SELECT count(*) FROM disputes d WHERE d.state = 'resolved' AND
              (SELECT count(*) FROM ledger_transactions x WHERE x.ref_id = d.id AND x.kind = 'dispute')
              <> CASE WHEN d.adjustment_fen <> 0 THEN 1 ELSE 0 END"""),
        )
        disputes = dict(await conn.fetch("SELECT state, count(*) FROM disputes GROUP BY 1"))
        report.figure("disputes by state", dict(sorted(disputes.items())))
        top_ups = dict(await conn.fetch("SELECT state, count(*) FROM top_ups GROUP BY 1"))
        report.figure("top-ups by state", dict(sorted(top_ups.items())))
        # -- quotas ------------------------------------------------------------------------------------
        report.figure("quota rows (account × week × kind)", await q("SELECT count(*) FROM outreach_quotas"))
        report.figure("quota weeks seen", await q("SELECT count(DISTINCT week_start) FROM outreach_quotas"))
        report.figure(
            "quota rows used up", await q("SELECT count(*) FROM outreach_quotas WHERE used = quota_limit AND quota_limit > 0")
        )
        report.check(
            "quota used beyond its limit (or negative)",
            await q("SELECT count(*) FROM outreach_quotas WHERE used > quota_limit OR used < 0"),
        )
        # conversations opened == conversation units used, per opener, week and counterpart role
        rows = await conn.fetch("""
            WITH opened AS (
              SELECT c.opener_id, a.role AS counterpart_role,
                     (date_trunc('week', c.created_at AT TIME ZONE 'Asia/Shanghai')
                        AT TIME ZONE 'Asia/Shanghai') AS week, count(*) n
              FROM conversations c JOIN accounts a
                ON a.id = CASE WHEN c.account_low = c.opener_id THEN c.account_high ELSE c.account_low END
              GROUP BY 1, 2, 3)
            SELECT coalesce(o.opener_id, q.account_id) account, coalesce(o.week, q.week_start) week,
                   coalesce(o.n, 0) opened, coalesce(q.used, 0) used
            FROM opened o FULL JOIN (SELECT * FROM outreach_quotas WHERE kind = 'conversations') q
              ON q.account_id = o.opener_id AND q.week_start = o.week AND q.counterpart_role = o.counterpart_role
            WHERE coalesce(o.n, 0) <> coalesce(q.used, 0)""")
        report.check(
            "conversation quota counter differs from the conversations opened",
            len(rows),
            "; ".join(f"{r['account']} {r['week']}: opened {r['opened']}, used {r['used']}" for r in rows[:5]),
        )
        report.figure("conversations opened", await q("SELECT count(*) FROM conversations"))
        # contact views leave no row: the counters must equal the 200 answers (± unknown outcomes)
        used = dict(await conn.fetch("SELECT account_id, sum(used) FROM outreach_quotas WHERE kind = 'contact_views' GROUP BY 1"))
        bad = []
        for merchant in world.merchants:
            seen, unknown = world.contact_views.get(merchant, [0, 0])
            counted = int(used.get(merchant) or 0)
            if not seen <= counted <= seen + unknown:
                bad.append(f"{merchant}: {seen} answered 200 (+{unknown} unknown), counter {counted}")
        report.check("contact-view quota counter differs from the views answered", len(bad), "; ".join(bad[:5]))
        report.figure("contact views answered 200", sum(v[0] for v in world.contact_views.values()))
        bad = []
        for opener, (seen, unknown) in world.conversations.items():
            counted = await q("SELECT count(*) FROM conversations WHERE opener_id = $1", opener)
            if not seen <= counted <= seen + unknown:
                bad.append(f"{opener}: {seen} answered 201 (+{unknown} unknown), opened {counted}")
        report.check("conversations opened differ from the 201 answers", len(bad), "; ".join(bad[:5]))
        # -- live bases --------------------------------------------------------------------------------
        coop = dict(await conn.fetch("SELECT state, count(*) FROM cooperations GROUP BY 1"))
        report.figure("cooperations by state", dict(sorted(coop.items())))
        checkins = dict(await conn.fetch("SELECT state, count(*) FROM check_ins GROUP BY 1"))
        report.figure("check-ins by state", dict(sorted(checkins.items())))
        report.check(
            "creator in two active cooperations",
            await q(
                "SELECT count(*) FROM (SELECT creator_id FROM cooperations WHERE state = 'active' "
                "GROUP BY 1 HAVING count(*) > 1) x"
            ),
        )
        report.check("checked in under an ended cooperation", await q(SAMPLE_SQL["checked in under an ended cooperation"]))
        report.check(
            "creator with two active creator bindings",
            await q(
                "SELECT count(*) FROM (SELECT creator_id FROM creator_bindings WHERE state = 'active' "
                "GROUP BY 1 HAVING count(*) > 1) x"
            ),
        )
        # -- events and webhooks ---------------------------------------------------------------------
        report.figure("events in the outbox", await q("SELECT count(*) FROM events"))
        report.figure("transitions recorded (history rows)", await q("SELECT count(*) FROM transition_history"))
        report.figure(
            "timers still due",
            await q(
                "SELECT count(*) FROM timers, clock_state WHERE clock_state.id = 1 AND "
                "due_at <= now() + make_interval(secs => clock_state.offset_seconds)"
            ),
        )
        report.figure(
            "webhook deliveries by status",
            dict(sorted(dict(await conn.fetch("SELECT status, count(*) FROM webhook_deliveries GROUP BY 1")).items())),
        )
        report.figure("webhook attempts", await q("SELECT count(*) FROM webhook_attempts"))
        report.figure(
            "webhook attempts lost with a killed worker (lease expired)",
            await q("SELECT count(*) FROM webhook_attempts WHERE error = 'lease_expired'"),
        )
        report.figure(
            "events received (operator `*` / merchant `task_order.*`)",
            f"{len(receiver.received('op'))} / {len(receiver.received('m0'))}",
        )
        report.figure("receiver requests (duplicates)", f"{receiver.requests} ({receiver.duplicates})")
        for name, ids in missing.items():
            report.check(f"webhook events never delivered to subscription {name}", len(ids), ", ".join(ids[:5]))
        report.check(
            "webhook deliveries failed for good", await q("SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'")
        )
        report.check("webhook requests with a bad signature", receiver.bad_signatures)
    finally:
        await conn.close()


# =========================================================================== main
async def fresh_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180, help="length of the load")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--db", default="lc_stress", help="database to create, use and drop")
    parser.add_argument("--replicas", type=int, default=2, help="service processes (ports from --base-port on)")
    parser.add_argument("--base-port", type=int, default=8111)
    parser.add_argument("--ports", type=int, nargs="+", default=None, help="the processes' ports (sets --replicas)")
    parser.add_argument(
        "--broker",
        default=None,
        help="every replica relays the outbox to NATS JetStream (a stream of its own for the run), afterwards every "
        "outbox event must be on it exactly once, in order per entity: `own` (the default with --replicas 3 or more) "
        "starts a throw-away nats-server of the run's own and restarts that one mid-load; nats://… uses that server "
        "and restarts the machine's nats-server; `none` for no broker",
    )
    parser.add_argument("--broker-restart-at", type=float, default=0.6, help="restart nats-server at this fraction of the load")
    parser.add_argument(
        "--db-replica",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run on a throw-away primary with a streaming replica (bench/replica_cluster.py); heavy reads go to it, "
        "and at least one must be served by it (the default with --replicas 3 or more)",
    )
    parser.add_argument("--receiver-port", type=int, default=8119)
    parser.add_argument("--merchants", type=int, default=10)
    parser.add_argument("--creators", type=int, default=40)
    parser.add_argument("--agencies", type=int, default=4)
    parser.add_argument(
        "--clock-days", type=float, default=12.0, help="business days the test clock moves during the load (steady rate)"
    )
    parser.add_argument("--clock-interval", type=float, default=1.0, help="seconds between clock steps")
    parser.add_argument("--kill-at", type=float, default=0.4, help="SIGKILL after this fraction of the load")
    parser.add_argument("--restart-after", type=float, default=5.0, help="seconds before the restart")
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=150.0)
    parser.add_argument("--max-p99", type=float, default=None, help="a violation when the p99 latency (s) is over this")
    parser.add_argument("--max-drain", type=float, default=None, help="a violation when the relay drains later (s) than this")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database afterwards")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    global PG
    if args.db in ("test", "postgres", "template0", "template1"):
        raise SystemExit(f"refusing to use the database {args.db!r}")
    if args.ports:
        args.replicas = len(args.ports)
    # scale.md: `make stress --replicas 3` is three processes, the broker relay and the replica
    if args.broker is None:
        args.broker = "own" if args.replicas >= 3 else "none"
    if args.db_replica is None:
        args.db_replica = args.replicas >= 3
    own_nats = None
    if args.broker == "none":
        args.broker = None
    elif args.broker == "own":
        own_nats = OwnNats().start()
        args.broker = own_nats.url
        log(f"throw-away nats-server with JetStream on {own_nats.url}")
    args.own_nats = own_nats
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    log(
        f"stress: {args.seconds:.0f} s, {args.clients} clients, {args.replicas} service processes, database {args.db}, "
        f"broker {args.broker or 'none'}, {'a streaming replica' if args.db_replica else 'no replica'}, seed {seed}"
    )
    cluster = None
    if args.db_replica:
        sys.path.insert(0, str(ROOT))
        from bench.replica_cluster import ReplicaCluster

        cluster = ReplicaCluster(max_connections=250).start()
        PG = f"postgresql://postgres@127.0.0.1:{cluster.primary_port}"
        args.replica_pg = f"postgresql://postgres@127.0.0.1:{cluster.replica_port}"
        log(f"throw-away primary :{cluster.primary_port}, streaming replica :{cluster.replica_port}")
    try:
        await fresh_database(args.db)
        try:
            return await _run(args, seed, rng)
        finally:
            if not args.keep_db:
                await drop_database(args.db)
    finally:
        if cluster is not None:
            cluster.close()
        if own_nats is not None:
            own_nats.stop()


async def scrape_replica_reads(services: list[Service]) -> dict[str, float]:
    """`livecollab_replica_reads_total` summed over the processes (a SIGKILLed one's count before
    its restart is lost: the figure is a lower bound)."""
    totals = {"replica": 0.0, "primary": 0.0}
    async with httpx.AsyncClient(timeout=10) as http:
        for service in services:
            try:
                text = (await http.get(f"{service.url}/metrics")).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                for source in totals:
                    if line.startswith(f'livecollab_replica_reads_total{{source="{source}"}}'):
                        totals[source] += float(line.rsplit(" ", 1)[1])
    return totals


# =========================================================================== the broker
class OwnNats:
    """A nats-server with JetStream of the run's own (a free loopback port, a store in a temporary
    directory), so the restart mid-load touches no other user of the machine's server."""

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from bench.common import free_port

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lc-stress-nats-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> OwnNats:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.dir, "-l", f"{self.dir}/nats.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.1)
        raise SystemExit(f"nats-server did not start on :{self.port} (log in {self.dir})")

    def restart(self) -> int | None:
        pid = self.proc.pid if self.proc else None
        self.stop(keep_store=True)
        self.start()
        return pid

    def stop(self, keep_store: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if not keep_store:
            shutil.rmtree(self.dir, ignore_errors=True)


def restart_nats(events: list[str], own: OwnNats | None = None) -> None:
    if own is not None:
        pid = own.restart()
        events.append(f"nats-server of the run restarted (pid {pid} stopped)")
        log(events[-1])
        return
    restart_machines_nats(events)


def restart_machines_nats(events: list[str]) -> None:
    """Stop the machine's nats-server (SIGTERM) and start it again with JetStream, its store kept."""
    found = subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True).returncode != 0:
            break
        time.sleep(0.1)
    subprocess.run(
        [
            "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server", "--",
            "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
        ],
        check=True,
    )  # fmt: skip
    events.append(f"nats-server restarted (pid {pids or '?'} stopped)")
    log(events[-1])


async def broker_restarter(at: float, events: list[str], own: OwnNats | None) -> None:
    await asyncio.sleep(at)
    await asyncio.to_thread(restart_nats, events, own)


async def broker_messages(url: str, stream: str, subjects: str, expected: int, timeout: float) -> tuple[float, list]:
    """Wait until the stream holds `expected` messages (or `timeout`), then read them all in
    stream order: (seconds waited, [(message id, event JSON)])."""
    import nats

    started = time.monotonic()
    for _ in range(50):  # the server may still be coming back from its restart
        try:
            nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=3)
            break
        except Exception:  # noqa: BLE001
            await asyncio.sleep(0.5)
    else:
        raise RuntimeError("NATS unreachable after the run")
    try:
        js = nc.jetstream()
        while True:
            held = (await js.stream_info(stream)).state.messages
            if held >= expected or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.5)
        waited = time.monotonic() - started
        from nats.js.api import AckPolicy, ConsumerConfig

        # no acks: a reader that acknowledges nothing would stop at max_ack_pending (1,000)
        sub = await js.pull_subscribe(
            subjects, durable=f"stress_check_{os.getpid()}", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        found: list = []
        while len(found) < held:
            try:
                batch = await sub.fetch(1000, timeout=5)
            except TimeoutError:
                break
            for message in batch:
                found.append(((message.headers or {}).get("Nats-Msg-Id"), json.loads(message.data)))
        return waited, found
    finally:
        await nc.close()


async def delete_stream(url: str, stream: str) -> None:
    import nats

    try:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    except Exception:  # noqa: BLE001
        return
    try:
        await nc.jetstream().delete_stream(stream)
    except Exception:  # noqa: BLE001
        pass
    finally:
        await nc.close()


async def check_broker(dsn: str, args: argparse.Namespace, stream: str, prefix: str, report: Report) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        outbox = {r["id"] for r in await conn.fetch("SELECT id FROM events")}
    finally:
        await conn.close()
    waited, found = await broker_messages(args.broker, stream, f"{prefix}.>", len(outbox), args.drain_timeout)
    report.figure("broker: relay caught up after the load", f"{waited:.1f} s")
    ids = Counter(message_id for message_id, _ in found)
    report.figure("broker: messages on the stream / outbox events", f"{len(found)} / {len(outbox)}")
    missing = sorted(outbox - set(ids))
    report.check("outbox events missing on the broker", len(missing), ", ".join(missing[:5]))
    twice = sorted(i for i, n in ids.items() if n > 1)
    report.check("events on the broker more than once (by message id)", len(twice), ", ".join(twice[:5]))
    strangers = sorted(i for i in ids if i not in outbox)
    report.check("broker messages that are no outbox event", len(strangers), ", ".join(str(i) for i in strangers[:5]))
    body_mismatch = sum(1 for message_id, body in found if body.get("id") != message_id)
    report.check("broker message id differs from its event's id", body_mismatch)
    last: dict[tuple[str, str], int] = {}
    out_of_order = []
    for _, body in found:  # a machine's event carries its entity and the version it moved to
        data = body.get("data") or {}
        if "machine" in data and "id" in data and isinstance(data.get("version"), int):
            key = (data["machine"], data["id"])
            if data["version"] <= last.get(key, 0):
                out_of_order.append(f"{key[0]} {key[1]} v{data['version']} after v{last[key]}")
            last[key] = max(last.get(key, 0), data["version"])
    report.check("broker messages out of order per entity (versions)", len(out_of_order), "; ".join(out_of_order[:5]))
    report.figure("broker: entities whose order was checked", len(last))


async def _run(args: argparse.Namespace, seed: int, rng: random.Random) -> int:
    dsn = f"{PG}/{args.db}"
    env = {
        "LC_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://"),
        "LC_ENV": "test",
        # one secret for both replicas (LC_ENV=test alone gives each process its own)
        "LC_SECRET_KEY": secrets.token_urlsafe(32),
        "LC_LOG_LEVEL": "WARNING",
        "LC_LOG_JSON": "true",
        "LC_RUN_SWEEPER": "true",
        "LC_SWEEPER_INTERVAL_SECONDS": "1",
        "LC_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",  # the receiver this script runs
        "LC_BOOTSTRAP_OPERATOR_USERNAME": "stress-operator",
        "LC_BOOTSTRAP_OPERATOR_PASSWORD": PASSWORD,
        "LC_ARGON2_TIME_COST": "1",
        "LC_ARGON2_MEMORY_COST_KIB": "1024",
        # two replicas share the machine's PostgreSQL (max_connections 100) with the test suite:
        # each keeps a pool sized for its share of the clients and warms a part of it
        "LC_DB_POOL_SIZE": str(max(8, 48 // args.replicas)),
        "LC_DB_POOL_WARM": "8",
    }
    if args.db_replica:
        env["LC_DATABASE_REPLICA_URL"] = f"{args.replica_pg}/{args.db}".replace("postgresql://", "postgresql+asyncpg://")
    stream = prefix = ""
    if args.broker:
        stream, prefix = f"LCSTRESS{seed}", f"lcstress{seed}"
        env |= {
            "LC_EVENT_BROKER_URL": args.broker,
            "LC_EVENT_BROKER_STREAM": stream,
            "LC_EVENT_BROKER_SUBJECT_PREFIX": prefix,
        }
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"], cwd=ROOT, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL
    )
    if args.broker:
        subprocess.run(
            [sys.executable, "-m", "app", "broker", "setup"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    logdir = Path(tempfile.mkdtemp(prefix="lc-stress-"))
    services = [Service(f"service-{chr(ord('a') + i)}", args.base_port + i, env, logdir) for i in range(args.replicas)]
    receiver = Receiver(args.receiver_port)
    receiver.start()
    stats = Stats()
    api = Api([s.url for s in services], stats)
    report = Report()
    try:
        # One process bootstraps the operator first; the second starts while the world is built
        # (requests refused by a process that is not up yet go to the other one).
        services[0].start()
        await services[0].ready()
        for service in services[1:]:
            service.start()
        world = World()
        await build(api, world, args, f"http://127.0.0.1:{args.receiver_port}", rng)
        for service in services[1:]:
            await service.ready()
        stats.transport_errors.clear()
        log(
            f"world: {len(world.merchants)} merchants, {len(world.creators)} creators, {len(world.agencies)} "
            f"agencies with {len(world.bases)} bases, {len(world.leaders)} group leaders; services "
            f"{' '.join(s.url for s in services)}; logs in {logdir}"
        )
        stats.status.clear()
        stats.latencies.clear()
        stats.by_action.clear()
        stats.codes.clear()
        load_started = time.monotonic()
        deadline = load_started + args.seconds
        kill_events: list[str] = []
        violations_seen: Counter = Counter()
        samples = [0]
        tasks = [
            asyncio.create_task(client_loop(Client(api, world, random.Random(rng.random())), deadline))
            for _ in range(args.clients)
        ]
        tasks.append(
            asyncio.create_task(clock_loop(api, world, args.clock_days * 86400, args.seconds, args.clock_interval, deadline))
        )
        tasks.append(asyncio.create_task(sampler(dsn, deadline, violations_seen, samples)))
        if not args.no_kill:
            tasks.append(asyncio.create_task(killer(services, args.seconds * args.kill_at, args.restart_after, kill_events)))
        if args.broker and args.broker_restart_at > 0:
            tasks.append(asyncio.create_task(broker_restarter(args.seconds * args.broker_restart_at, kill_events, args.own_nats)))
        await asyncio.gather(*tasks)
        load_seconds = time.monotonic() - load_started
        log(f"load done in {load_seconds:.1f} s; draining the webhook relay")
        drained, missing = await drain(dsn, receiver, world, args.drain_timeout)
        log(f"drained in {drained:.1f} s")
        if args.broker:
            await check_broker(dsn, args, stream, prefix, report)
        replica_reads = await scrape_replica_reads(services) if args.db_replica else None
        for service in services:
            service.stop()

        totals = stats.totals()
        requests = sum(totals.values())
        report.figure("seed", seed)
        report.figure("load", f"{load_seconds:.1f} s, {args.clients} clients, {args.replicas} processes")
        if args.db_replica:
            answered = [t for t in world.data_as_of if t]
            report.figure("heavy reads answered with X-Data-As-Of (replica or primary)", len(answered))
            report.check("heavy reads without X-Data-As-Of", len(world.data_as_of) - len(answered))
            assert replica_reads is not None
            report.figure(
                "heavy reads by where they read (/metrics of the processes alive at the end)",
                f"replica {replica_reads['replica']:.0f}, primary {replica_reads['primary']:.0f}",
            )
            report.check(
                "heavy reads served by the streaming replica", replica_reads["replica"] == 0, "none: the replica was never read"
            )
        report.figure(
            "requests",
            f"{requests} ({requests / load_seconds:.1f}/s): " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())),
        )
        if stats.latencies:
            lat = sorted(stats.latencies)
            report.figure("latency p50 / p99", f"{statistics.median(lat) * 1000:.0f} / {lat[int(len(lat) * 0.99)] * 1000:.0f} ms")
        report.figure("transport errors (request not answered)", dict(stats.transport_errors) or 0)
        report.figure("retried on the other process (same Idempotency-Key)", stats.retried)
        report.figure("outcome unknown after the retry", dict(stats.unknown_outcome) or 0)
        report.figure(
            "test clock",
            f"moved {world.clock_moved / 86400:.1f} days in {world.clock_advances} steps, "
            f"{world.timers_fired_by_clock} timers fired by the advance calls",
        )
        report.figure("crash", "; ".join(kill_events) or "none")
        report.figure("invariant samples during the load", samples[0])
        report.figure("webhook drain after the load", f"{drained:.1f} s")
        await check_database(dsn, receiver, world, report, missing)
        history = report.figures
        transitions = next(v for k, v in history if k == "transitions recorded (history rows)")
        report.figure("transitions/s (history rows / load seconds)", f"{int(transitions) / load_seconds:.1f}")
        for name, n in violations_seen.items():
            report.check(f"sampled during the load: {name}", n, "snapshots where it failed")
        fivexx = sum(n for counter in stats.status.values() for s, n in counter.items() if s >= 500)
        report.check("5xx answers", fivexx, " | ".join(stats.server_errors[:5]))
        problems = [line for s in services for line in s.log_problems()]
        report.figure("ERROR lines in the service logs", len(problems))
        report.check("ERROR lines in the service logs", len(problems), "first ones below")
        report.check("`deadlock detected` in the service logs", sum(s.deadlocks() for s in services))
        if stats.latencies and args.max_p99 is not None:
            p99 = sorted(stats.latencies)[int(len(stats.latencies) * 0.99)]
            report.check(f"p99 over {args.max_p99:g} s", p99 > args.max_p99, f"{p99 * 1000:.0f} ms")
        if args.max_drain is not None:
            report.check(
                f"webhook relay drained later than {args.max_drain:g} s after the load",
                drained > args.max_drain,
                f"{drained:.1f} s",
            )
        report.check(
            "unhandled errors logged by the services",
            sum(1 for line in problems if "unhandled error" in line or "database error" in line),
        )

        print("\nactions (count, p50 and p99 latency, HTTP status counts):")
        for name in sorted(stats.status):
            counter = stats.status[name]
            times = sorted(stats.by_action[name])
            p50 = statistics.median(times) * 1000 if times else 0
            p99 = times[int(len(times) * 0.99)] * 1000 if times else 0
            print(
                f"  {name:<28} {sum(counter.values()):6d}  p50 {p50:6.0f} ms  p99 {p99:6.0f} ms  "
                + " ".join(f"{s}:{n}" for s, n in sorted(counter.items()))
            )
        print("\n4xx answers by code:")
        for code, n in stats.codes.most_common():
            print(f"  {code:<44} {n:6d}")
        print("\nfigures:")
        for name, value in report.figures:
            print(f"  {name:<58} {value}")
        if problems:
            print("\nfirst ERROR lines of the service logs:")
            for line in problems[:10]:
                print("  " + line[:400])
        if report.violations:
            print("\nVIOLATIONS:")
            for v in report.violations:
                print("  ✗ " + v)
            return 1
        print("\nall invariants hold ✓")
        return 0
    finally:
        await api.close()
        for service in services:
            service.stop()
        receiver.stop()
        if args.broker:
            await delete_stream(args.broker, stream)


async def _main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM: unwind through the clean-up (services stopped, database dropped)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
