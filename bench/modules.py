"""One figure per module: the hottest transition of campaigns, live bases, outreach and incentives,
driven over HTTP against the service on PostgreSQL and against the bare asyncpg reference
(`bare_modules.py`) under the same load, in one run, printed as ratios (issue #9 item 6).

    make bench-modules              # or: .venv/bin/python bench/modules.py --seconds 15 --concurrency 16
    .venv/bin/python bench/modules.py --sql   # print the SQL the service runs for each transition

The transitions (one per module, the one a real platform calls most):

- campaigns: a pre-selected creator signs up (`POST /v1/campaigns/{id}/signups`). Every creator of a
  campaign does it, in a burst after publication and before `signup_deadline`; the later steps
  (merchant decisions, platform review, products) happen once per signup at most and fewer of
  them reach each step.
- live bases: a creator scans the base's QR code (`POST /v1/check-ins`): every creator at every
  base, every day it goes live there, opens a check-in page; confirming follows once.
- outreach: an alliance merchant views a creator's contact (`POST /v1/creators/{id}/contact-views`):
  the quota-counted write. Every view counts (opening a conversation counts once per pair, then
  the pair's conversation is answered with nothing counted), so merchants browsing creators call
  it most.
- incentives: a service provider requests a voucher redemption (`POST /v1/vouchers/{id}/redemptions`):
  the providers' daily write, locking the voucher's balance; the operator's approval follows
  once per request.

Set-up goes through the API except two preconditions production has no endpoint for: the
quota policy in force this week (`PUT /v1/admin/quota-policy` only schedules next Monday's, so a
policy with high limits is inserted as if an operator had set it last week: the benchmark
measures the quota check-and-increment, not 429s) and the provider contracts' activation date
(moved to last month, so that last month's incentive statements can be computed and published
through the API to issue real vouchers; production has no test clock).

Each side runs SECONDS per module, split into ROUNDS phases alternating service and bare (a
neighbour's burst on a shared machine then hits both alike). Prints per module transitions/s,
p50/p99, CPU per transition (the server process; the PostgreSQL backends of this database), the
ratio service/bare of transitions/s and the "cpu ratio" (bare/service CPU per transition, the
steadier figure when the machine is shared).

Needs PostgreSQL (BENCH_PG, default the local server); creates and drops its own database
(`--db`, default `lc_bench_modules`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import PASSWORD, Stats, World, backend_cpu_seconds, cpu_seconds, free_port, peak_rss_mib, ready, spawn, stop  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
SH = ZoneInfo("Asia/Shanghai")
MODULES = ("campaigns", "live_bases", "outreach", "incentives")
HUGE = 1_000_000  # the limits of the benchmark's quota policy


async def admin_connect() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(f"{PG}/postgres")
    except asyncpg.InvalidCatalogNameError:
        return await asyncpg.connect(f"{PG}/template1")


async def fresh_database(db: str) -> str:
    if db == "test":
        raise SystemExit("refusing to use the database 'test'")
    conn = await admin_connect()
    await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{db}"')
    await conn.close()
    return f"{PG}/{db}"


async def drop_database(db: str) -> None:
    conn = await admin_connect()
    await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await conn.close()


def month_of(day: date, delta: int = 0) -> str:
    index = day.year * 12 + day.month - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def use_date() -> date:
    """A week ahead (Asia/Shanghai): ≥ 3 working days' notice, before the vouchers expire (the
    earlier of 30 days after publication and the 10th of next month, so ≥ 10 days away)."""
    return datetime.now(SH).date() + timedelta(days=7)


class ModulesWorld(World):
    """The four modules' preconditions, made through the API (see the module doc for the two
    exceptions). Worker `w` acts as creator `creators[w]`, provider `providers[w]` (its own voucher)
    and merchant `merchants[w % len(merchants)]`."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        super().__init__(client)
        self.url = url  # asyncpg DSN of the service's database
        self.merchant_ids: list[str] = []
        self.providers: list[str] = []
        self.vouchers: dict[str, str] = {}  # provider -> voucher
        self.provider_merchant: dict[str, str] = {}
        self.campaign = ""
        self.check_in_token = ""
        self.use_date = use_date().isoformat()
        self.calls: dict[int, int] = {}

    async def build_modules(self, workers: int, merchants: int) -> None:
        op = await self.login("bench-operator")
        self.platform = await self.account(op, "platform", "bench-platform", {})
        for i in range(merchants):
            self.merchant_ids.append(
                await self.account(op, "merchant", f"bench-m{i}", {"shop_name": f"Shop {i}", "alliance_member": True})
            )
        for i in range(workers):
            # level ≤ 4: may start a cooperation at a base (check-in rule 2)
            self.creators.append(
                await self.account(
                    op,
                    "creator",
                    f"bench-c{i}",
                    {"nickname": f"Creator {i}", "level": 3, "contact": {"phone": "13800138000", "wechat": f"wx{i}"}},
                )
            )
        await self._campaign(op)
        await self._live_base(op)
        await self._quota_policy()
        await self._vouchers(op, workers)

    async def _campaign(self, op: dict[str, str]) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        r = await self.client.post(
            "/v1/campaigns",
            headers=op,
            json={
                "title": "双11 直播间奖励",
                "signup_deadline": (now + timedelta(days=20)).isoformat(),
                "product_deadline": (now + timedelta(days=21)).isoformat(),
                "live_from": (now + timedelta(days=22)).isoformat(),
                "live_to": (now + timedelta(days=60)).isoformat(),
            },
        )
        r.raise_for_status()
        self.campaign = r.json()["id"]
        self.live_from = datetime.fromisoformat(r.json()["live_from"])
        self.campaign_times = {k: r.json()[k] for k in ("signup_deadline", "product_deadline", "live_from", "live_to")}
        (await self.client.post(f"/v1/campaigns/{self.campaign}/publish", headers=op, json={})).raise_for_status()
        (
            await self.client.put(
                f"/v1/campaigns/{self.campaign}/eligible-creators", headers=op, json={"creator_ids": self.creators}
            )
        ).raise_for_status()

    async def _live_base(self, op: dict[str, str]) -> None:
        agency = await self.account(op, "agency", "bench-agency", {"name": "Agency"})
        h = self.tokens[agency]
        r = await self.client.post("/v1/live-bases", headers=h, json={"name": "Base", "address": "杭州"})
        r.raise_for_status()
        self.base, self.agency = r.json()["id"], agency
        await self.fresh_check_in_code()

    async def fresh_check_in_code(self) -> None:
        """A code is valid LC_CHECKIN_CODE_TTL_SECONDS (30 min): taken again before the phases."""
        code = await self.client.get(f"/v1/live-bases/{self.base}/check-in-code", headers=self.tokens[self.agency])
        code.raise_for_status()
        self.check_in_token = code.json()["token"]

    async def _quota_policy(self) -> None:
        """No endpoint sets this week's policy (PUT schedules next Monday's): insert one that took
        effect in 2020, with limits the benchmark cannot exhaust, before any quota row exists."""
        tiers = f'[{{"min_last_week_gmv_fen": 0, "conversations": {HUGE}, "contact_views": {HUGE}}}]'
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(
                "INSERT INTO quota_policies (id, effective_week, merchant_tiers, creator_tiers, fixed, created_by, "
                "created_at) VALUES ('qpl_bench', '2020-01-05 16:00+00', $1, $2, $3, 'bench', now())",
                tiers,
                f'[{{"min_level": 0, "conversations": {HUGE}}}]',
                f'{{"agency_to_creator": {HUGE}, "group_leader_to_creator": {HUGE}, "group_leader_to_merchant": {HUGE}}}',
            )
        finally:
            await conn.close()

    async def _vouchers(self, op: dict[str, str], workers: int) -> None:
        """One certified provider per worker, each with a merchant that jumped to V4 last month:
        last month's statements are computed and published, issuing each provider a dimension-2
        voucher (usable for any contracted merchant) of 10**12 fen."""
        today = datetime.now(SH).date()
        last = month_of(today, -1)
        tiers = []
        for i in range(workers):
            provider = await self.account(op, "service_provider", f"bench-p{i}", {"name": f"P{i}", "certified": True})
            merchant = await self.account(op, "merchant", f"bench-pm{i}", {"shop_name": f"PM {i}"})
            r = await self.client.post(
                "/v1/provider-contracts", headers=self.tokens[provider], json={"merchant_id": merchant, "mode": "service_fee"}
            )
            r.raise_for_status()
            (
                await self.client.post(f"/v1/provider-contracts/{r.json()['id']}/accept", headers=self.tokens[merchant], json={})
            ).raise_for_status()
            self.providers.append(provider)
            self.provider_merchant[provider] = merchant
            tiers.append({"merchant_id": merchant, "tier": 4})
        # no test clock in production: the contracts were active last month
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(
                "UPDATE provider_contracts SET created_at = $1, activated_at = $1",
                datetime.combine(today.replace(day=1) - timedelta(days=20), datetime.min.time(), SH),
            )
        finally:
            await conn.close()
        ph = self.tokens[self.platform]
        (await self.client.post("/v1/ingest/merchant-tiers", headers=ph, json={"month": last, "tiers": tiers})).raise_for_status()
        r = await self.client.post(
            "/v1/incentive-programs",
            headers=op,
            json={
                "name": "bench",
                "month_from": last,
                "month_to": month_of(today, 1),
                "min_active_merchants": 0,
                "v4_reward_fen": 10**12,
            },
        )
        r.raise_for_status()
        program = r.json()["id"]
        for step in ("compute", "publish"):
            (
                await self.client.post(f"/v1/incentive-programs/{program}/months/{last}/{step}", headers=op, json={})
            ).raise_for_status()
        for provider in self.providers:
            r = await self.client.get("/v1/vouchers", headers=self.tokens[provider])
            r.raise_for_status()
            self.vouchers[provider] = r.json()["items"][0]["id"]
            self.voucher_expires_at = r.json()["items"][0]["expires_at"]

    def bare_seed(self) -> dict:
        """The same world for the bare reference (its own ids, in its bare_* tables)."""
        return {
            "merchants": len(self.merchant_ids),
            "creators": len(self.creators),
            "providers": len(self.providers),
            **self.campaign_times,
            "voucher_expires_at": self.voucher_expires_at,
        }


# -- one call per module: (world, client, bare, worker, n) -> (name, request coroutine, success status) -----
def campaigns_call(world, client, bare: bool, worker: int, n: int):
    # a distinct planned time per signup (one active signup per creator, campaign and time)
    at = (world.live_from + timedelta(seconds=n)).isoformat()
    shop = worker % len(world.merchant_ids)
    if bare:
        return (
            "signup",
            client.post(
                "/campaigns/cmp/signups", json={"creator_id": f"c{worker}", "shop_ids": [f"m{shop}"], "planned_live_at": at}
            ),
            201,
        )
    return (
        "signup",
        client.post(
            f"/v1/campaigns/{world.campaign}/signups",
            headers=world.tokens[world.creators[worker]],
            json={"shop_ids": [world.merchant_ids[shop]], "planned_live_at": at},
        ),
        201,
    )


def live_bases_call(world, client, bare: bool, worker: int, n: int):
    if bare:
        return "check-in", client.post("/check-ins", json={"creator_id": f"c{worker}", "base_id": "base"}), 201
    return (
        "check-in",
        client.post("/v1/check-ins", headers=world.tokens[world.creators[worker]], json={"token": world.check_in_token}),
        201,
    )


def outreach_call(world, client, bare: bool, worker: int, n: int):
    creator, merchant = (worker + n) % len(world.creators), worker % len(world.merchant_ids)
    if bare:
        return (
            "contact-view",
            client.post(f"/creators/c{creator}/contact-views", json={"merchant_id": f"m{merchant}", "field": "phone"}),
            200,
        )
    return (
        "contact-view",
        client.post(
            f"/v1/creators/{world.creators[creator]}/contact-views",
            headers=world.tokens[world.merchant_ids[merchant]],
            json={"field": "phone"},
        ),
        200,
    )


def incentives_call(world, client, bare: bool, worker: int, n: int):
    if bare:
        return (
            "redemption",
            client.post(
                f"/vouchers/v{worker}/redemptions",
                json={"provider_id": f"p{worker}", "merchant_id": f"pm{worker}", "amount_fen": 100, "use_date": world.use_date},
            ),
            201,
        )
    provider = world.providers[worker]
    return (
        "redemption",
        client.post(
            f"/v1/vouchers/{world.vouchers[provider]}/redemptions",
            headers=world.tokens[provider],
            json={"merchant_id": world.provider_merchant[provider], "amount_fen": 100, "use_date": world.use_date},
        ),
        201,
    )


CALLS = {
    "campaigns": (campaigns_call, "creator signs up (POST /v1/campaigns/{id}/signups)"),
    "live_bases": (live_bases_call, "creator scans the QR code (POST /v1/check-ins)"),
    "outreach": (outreach_call, "merchant views a creator's contact (POST /v1/creators/{id}/contact-views)"),
    "incentives": (incentives_call, "provider requests a redemption (POST /v1/vouchers/{id}/redemptions)"),
}


def worker_of(call):
    """A load worker: (target, stats, worker, deadline); target is (world, client, bare)."""

    async def worker(target, stats: Stats, w: int, deadline: float) -> None:
        world, client, bare = target
        while time.perf_counter() < deadline:
            world.calls[w] = n = world.calls.get(w, 0) + 1  # across phases: signups need fresh times
            name, coro, ok = call(world, client, bare, w, n)
            if (await stats.call(name, coro)).status_code == ok:
                stats.transitions += 1

    return worker


class Phase:
    """One side's load phase of a module, possibly in several rounds alternating with the other
    side's (on a shared machine, a neighbour's burst then hits both sides alike)."""

    def __init__(self, label: str, worker, target, concurrency: int, pid: int, db: str) -> None:
        self.label, self.worker, self.target, self.concurrency, self.pid, self.db = label, worker, target, concurrency, pid, db
        self.stats = Stats()
        self.elapsed = self.cpu = self.pg = 0.0

    async def run(self, seconds: float, stats: Stats | None = None) -> None:
        stats = stats or self.stats
        deadline = time.perf_counter() + seconds
        cpu_before, pg_before = cpu_seconds(self.pid), backend_cpu_seconds(self.db)
        started = time.perf_counter()
        await asyncio.gather(*(self.worker(self.target, stats, w, deadline) for w in range(self.concurrency)))
        if stats is self.stats:
            self.elapsed += time.perf_counter() - started
            self.cpu += cpu_seconds(self.pid) - cpu_before
            self.pg += backend_cpu_seconds(self.db) - pg_before

    def result(self) -> dict:
        values = sorted(v for vs in self.stats.latency.values() for v in vs) or [float("nan")]
        n = self.stats.transitions
        result = {
            "rate": n / self.elapsed if self.elapsed else 0.0,
            "n": n,
            "p50": values[len(values) // 2] * 1000,
            "p99": values[min(len(values) - 1, int(len(values) * 0.99))] * 1000,
            "cpu": self.cpu / n * 1000 if n else float("nan"),
            "pg": self.pg / n * 1000 if n else float("nan"),
            "errors": dict(self.stats.errors),
        }
        print(
            f"  {self.label:<8} {result['rate']:8.1f}/s  n={n:6d}  p50={result['p50']:7.2f} ms  "
            f"p99={result['p99']:7.2f} ms  CPU/transition: server {result['cpu']:6.2f} ms, "
            f"PostgreSQL backends {result['pg']:6.2f} ms" + (f"  errors {result['errors']}" if result["errors"] else ""),
            flush=True,
        )
        return result


def service_env(url: str) -> dict[str, str]:
    # production settings (no test clock), cheap password hashing for the accounts it makes
    return {
        "LC_DATABASE_URL": url.replace("postgresql://", "postgresql+asyncpg://"),
        "LC_ENV": "production",
        "LC_SECRET_KEY": secrets.token_urlsafe(32),
        "LC_LOG_LEVEL": "WARNING",
        "LC_BOOTSTRAP_OPERATOR_USERNAME": "bench-operator",
        "LC_BOOTSTRAP_OPERATOR_PASSWORD": PASSWORD,
        "LC_ARGON2_TIME_COST": "1",
        "LC_ARGON2_MEMORY_COST_KIB": "1024",
    }


async def run(args) -> int:
    url = await fresh_database(args.db)
    env = service_env(url)
    procs: list[subprocess.Popen] = []
    logs = tempfile.TemporaryDirectory(prefix="bench-modules-")
    try:
        sport, bport = free_port(), free_port()
        # `python -m app serve` migrates first, then runs uvicorn (the deployment's command)
        service = spawn([sys.executable, "-m", "app", "serve", "--port", str(sport)], env, Path(logs.name, "service"))
        procs.append(service)
        bare = spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--log-level",
                "warning",
                "--no-access-log",
                "bench.bare_modules:app",
                "--port",
                str(bport),
            ],
            {"BENCH_DSN": url, "PYTHONPATH": str(ROOT)},
            Path(logs.name, "bare"),
        )
        procs.append(bare)
        await ready(f"http://127.0.0.1:{sport}/healthz", service)
        await ready(f"http://127.0.0.1:{bport}/health", bare)
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{sport}", limits=limits, timeout=30) as client,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{bport}", limits=limits, timeout=30) as bare_client,
        ):
            world = ModulesWorld(client, url)
            await world.build_modules(args.concurrency, args.merchants)
            (await bare_client.post("/seed", json=world.bare_seed())).raise_for_status()
            print(
                f"service pid {service.pid}, bare reference pid {bare.pid}; {args.concurrency} clients, "
                f"{args.seconds:g} s per side and module in {args.rounds} alternating round(s) "
                f"(warm-up {args.warmup:g} s)",
                flush=True,
            )
            results = {}
            for module in args.modules:
                call, what = CALLS[module]
                worker = worker_of(call)
                print(f"\n{module}: {what}", flush=True)
                if module == "live_bases":
                    await world.fresh_check_in_code()
                svc = Phase("service", worker, (world, client, False), args.concurrency, service.pid, args.db)
                ref = Phase("bare", worker, (world, bare_client, True), args.concurrency, bare.pid, args.db)
                for phase in (svc, ref):
                    if args.warmup:
                        await phase.run(args.warmup, Stats())
                for _ in range(args.rounds):
                    for phase in (svc, ref):
                        await phase.run(args.seconds / args.rounds)
                svc, ref = svc.result(), ref.result()
                results[module] = (svc, ref)
        print(
            f"\nper transition, service / bare ({args.concurrency} clients, {args.seconds:g} s each); "
            "cpu ratio = bare/service (server + PostgreSQL backends) CPU per transition:"
        )
        print(
            f"{'module':<11} {'transitions/s':>15} {'p50 ms':>15} {'p99 ms':>15} {'server CPU ms':>15} "
            f"{'PG CPU ms':>13} {'ratio':>6} {'cpu ratio':>9}"
        )
        for module, (svc, ref) in results.items():
            ratio = svc["rate"] / ref["rate"] if ref["rate"] else float("nan")
            cpu_ratio = (ref["cpu"] + ref["pg"]) / (svc["cpu"] + svc["pg"]) if svc["n"] and ref["n"] else float("nan")
            print(
                f"{module:<11} {svc['rate']:7.1f} /{ref['rate']:6.1f} {svc['p50']:7.1f} /{ref['p50']:6.1f} "
                f"{svc['p99']:7.1f} /{ref['p99']:6.1f} {svc['cpu']:7.2f} /{ref['cpu']:6.2f} "
                f"{svc['pg']:5.2f} /{ref['pg']:5.2f} {ratio:6.2f} {cpu_ratio:9.2f}"
            )
        for module, (svc, ref) in results.items():
            ratio = svc["rate"] / ref["rate"] if ref["rate"] else float("nan")
            print(f"ratio service/bare {module}: {ratio:.2f}")
        print(f"peak RSS: service {peak_rss_mib(service.pid):.0f} MiB, bare {peak_rss_mib(bare.pid):.0f} MiB")
        for name in ("service", "bare"):
            errors = Path(logs.name, name).read_text(errors="replace")
            if "Traceback" in errors or " 500 " in errors:
                print(f"{name} logged errors:\n{errors[-4000:]}")
        failed = [m for m, (svc, ref) in results.items() if not svc["n"] or not ref["n"]]
        if failed:
            print(f"no transition completed for: {', '.join(failed)}")
            return 1
        return 0
    except BaseException:
        for name in ("service", "bare"):
            path = Path(logs.name, name)
            if path.exists() and path.stat().st_size:
                print(f"--- {name} log (tail) ---\n{path.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        stop(procs)
        logs.cleanup()
        if not args.keep:
            await drop_database(args.db)


async def show_sql(args) -> int:
    """Run the service in this process (uvicorn.Server) and print the statements of one transition
    of each module, as the bare reference's docstrings describe them."""
    url = await fresh_database(args.db)
    os.environ.update(service_env(url), LC_RUN_SWEEPER="false")
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    import uvicorn  # noqa: PLC0415
    from sqlalchemy import event  # noqa: PLC0415
    from sqlalchemy.engine import Engine  # noqa: PLC0415

    from app.main import create_app  # noqa: PLC0415

    statements: list[str] = []
    event.listen(
        Engine,
        "before_cursor_execute",
        lambda conn, cursor, sql, params, context, many: statements.append(" ".join(sql.split()) + ("  [many]" if many else "")),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    try:
        await ready(f"http://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            world = ModulesWorld(client, url)
            await world.build_modules(1, 1)
            for module in args.modules:
                call, what = CALLS[module]
                for n in (1, 2):  # the second call shows the steady state (quota row exists, ...)
                    statements.clear()
                    name, coro, ok = call(world, client, False, 0, n)
                    response = await coro
                print(f"\n{module}: {what}: HTTP {response.status_code}, {len(statements)} statements")
                for sql in statements:
                    print(f"  {sql[:300]}")
        return 0
    finally:
        server.should_exit = True
        await task
        await drop_database(args.db)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of warm-up of each side before its module's phases (0: none)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="split each side's SECONDS into this many phases, alternating service and bare"
    )
    parser.add_argument("--merchants", type=int, default=4)
    parser.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES))
    parser.add_argument("--db", default="lc_bench_modules", help="database created and dropped (never 'test')")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end (to inspect it)")
    parser.add_argument(
        "--sql",
        action="store_true",
        help="instead: print the SQL the service runs for one transition of each module (service in-process)",
    )
    args = parser.parse_args()
    if args.sql:
        return asyncio.run(show_sql(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
