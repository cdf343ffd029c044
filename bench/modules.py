"""One figure per module: the hottest transition of campaigns, live bases, outreach and incentives,
driven by wrk over HTTP against the service on PostgreSQL and against the bare asyncpg reference
(`bare_modules.py`) in alternating phases, in one run, printed as ratios (issue #14 item 7).

    make bench-modules              # or: .venv/bin/python bench/modules.py --seconds 15 --concurrency 32
    .venv/bin/python bench/modules.py --seconds 3 --rounds 1   # a quick look
    .venv/bin/python bench/modules.py --sql   # print the SQL the service runs for each transition

The load generator is wrk (C; Debian's package, `make bench-modules` installs it) with
`bench/modules.lua`, never a Python generator on the same two cores (an httpx generator took about
half of them and flattered the service). THREADS wrk threads and CONCURRENCY connections; the
runner writes each phase's requests to a file the script reads (per thread its paths, bearer
tokens and bodies; a signup's planned time is made distinct per request by the script). The
service runs as bench/run.py runs it (perfbar's settings): one uvicorn worker, `app.main:app`,
LC_ENV=test, log level warning, no access log, migrated first; the reference is one uvicorn
worker too, on the same database (its own `bare_*` tables).

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

Each side runs SECONDS per module, split into ROUNDS wrk phases alternating service and bare (a
neighbour's burst on a shared machine then hits both alike), after a WARMUP phase each. Prints per
phase and then per module (medians over the rounds): transitions/s (2xx answers per second),
p50/p99 (wrk --latency), CPU per transition (the server process; the PostgreSQL backends of this
database), the ratio service/bare of transitions/s, the p99 ratio service/bare and the "cpu
ratio" (bare/service CPU per transition, the steadier figure when the machine is shared), and
whether each module meets issue #14's targets (ratio ≥ 0.50, p99 ≤ 2.5 × the bare's; `--strict`
exits 1 when one misses). Exit 1 when a phase completed nothing or answered non-2xx.

Needs PostgreSQL (BENCH_PG, default the local server); creates and drops its own database
(`--db`, default `lc_bench_modules`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import PASSWORD, World, backend_cpu_seconds, cpu_seconds, free_port, peak_rss_mib, ready, spawn, stop  # noqa: E402
from bench.run import UVICORN, parse_wrk  # noqa: E402

SCRIPT = Path(__file__).with_name("modules.lua")

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

    def bearer(self, account: str) -> str:
        return self.tokens[account]["Authorization"].removeprefix("Bearer ")

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


# -- wrk's requests per module: modules.lua's lines (thread, path, token, body, at0) ---------------
# Worker w (one per wrk connection) acts as creator w, provider w (its own voucher) and merchant
# w % merchants; worker w's requests go to wrk thread w % threads + 1, so a thread's connections
# cycle through their workers' requests.
PHASE_SPAN = 100_000  # seconds of planned_live_at a signup phase's threads may use (one per request)


def campaigns_rows(world: ModulesWorld, bare: bool, workers: int, at0: int) -> list[tuple]:
    """A pre-selected creator signs up, at a distinct planned time per request (@AT@)."""
    rows = []
    for w in range(workers):
        shop = w % len(world.merchant_ids)
        if bare:
            body = {"creator_id": f"c{w}", "shop_ids": [f"m{shop}"], "planned_live_at": "@AT@"}
            rows.append(("/campaigns/cmp/signups", "", body, at0))
        else:
            body = {"shop_ids": [world.merchant_ids[shop]], "planned_live_at": "@AT@"}
            rows.append((f"/v1/campaigns/{world.campaign}/signups", world.bearer(world.creators[w]), body, at0))
    return rows


def live_bases_rows(world: ModulesWorld, bare: bool, workers: int, at0: int) -> list[tuple]:
    """A creator scans the base's QR code (the code is taken afresh before the module's phases)."""
    if bare:
        return [("/check-ins", "", {"creator_id": f"c{w}", "base_id": "base"}, 0) for w in range(workers)]
    return [("/v1/check-ins", world.bearer(world.creators[w]), {"token": world.check_in_token}, 0) for w in range(workers)]


def outreach_rows(world: ModulesWorld, bare: bool, workers: int, at0: int) -> list[tuple]:
    """A merchant views creators' phones: worker w's merchant, each creator in turn."""
    rows = []
    for w in range(workers):
        merchant = w % len(world.merchant_ids)
        for k in range(len(world.creators)):
            creator = (w + k) % len(world.creators)
            if bare:
                rows.append((f"/creators/c{creator}/contact-views", "", {"merchant_id": f"m{merchant}", "field": "phone"}, 0))
            else:
                path = f"/v1/creators/{world.creators[creator]}/contact-views"
                rows.append((path, world.bearer(world.merchant_ids[merchant]), {"field": "phone"}, 0))
    return rows


def incentives_rows(world: ModulesWorld, bare: bool, workers: int, at0: int) -> list[tuple]:
    """A provider asks to redeem 1 yuan of its own voucher for its contracted merchant."""
    rows = []
    for w in range(workers):
        if bare:
            body = {"provider_id": f"p{w}", "merchant_id": f"pm{w}", "amount_fen": 100, "use_date": world.use_date}
            rows.append((f"/vouchers/v{w}/redemptions", "", body, 0))
        else:
            provider = world.providers[w]
            body = {"merchant_id": world.provider_merchant[provider], "amount_fen": 100, "use_date": world.use_date}
            rows.append((f"/v1/vouchers/{world.vouchers[provider]}/redemptions", world.bearer(provider), body, 0))
    return rows


CALLS = {
    "campaigns": (campaigns_rows, "creator signs up (POST /v1/campaigns/{id}/signups)"),
    "live_bases": (live_bases_rows, "creator scans the QR code (POST /v1/check-ins)"),
    "outreach": (outreach_rows, "merchant views a creator's contact (POST /v1/creators/{id}/contact-views)"),
    "incentives": (incentives_rows, "provider requests a redemption (POST /v1/vouchers/{id}/redemptions)"),
}


def write_rows(path: Path, rows: list[tuple], threads: int) -> Path:
    lines = []
    for w, (url, token, body, at0) in enumerate(rows):
        lines.append("\t".join((str(w % threads + 1), url, token, json.dumps(body, ensure_ascii=False), str(at0))))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Phase:
    """One side of a module: wrk phases (warm-up and measured rounds) against one server, with
    the CPU the server process and the database's PostgreSQL backends spent on them."""

    def __init__(self, label: str, base: str, pid: int, db: str, args) -> None:
        self.label, self.base, self.pid, self.db, self.args = label, base, pid, db, args
        self.results: list[dict] = []

    def run(self, config: Path, seconds: int, *, measured: bool = True, profile: str = "") -> dict:
        spy = None
        if profile:  # py-spy on the server during this phase
            fmt = "raw" if profile.endswith(".txt") else "flamegraph"
            spy = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-o", profile, "-f", fmt, "-p", str(self.pid)]
                + ["-d", str(seconds), "-r", "200"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result = load(self.base, config, self.pid, self.db, self.args, seconds)
        if spy:
            spy.wait()
        if measured:
            self.results.append(result)
            print(line(f"  {self.label}", result), flush=True)
        return result

    def summary(self) -> dict:
        return summary(self.results)


def load(base: str, config: Path, pid: int, db: str, args, seconds: int) -> dict:
    """One wrk phase on `base` and what the server process and the database's backends spent."""
    cpu, pg = cpu_seconds(pid), backend_cpu_seconds(db)
    wrk = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.concurrency}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(SCRIPT),
            base,
            "--",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    cpu, pg = cpu_seconds(pid) - cpu, backend_cpu_seconds(db) - pg
    if wrk.returncode:
        raise RuntimeError(f"wrk exited with {wrk.returncode}:\n{wrk.stdout}{wrk.stderr}")
    result = parse_wrk(wrk.stdout)
    ok = result["requests"] - result["non2xx"]
    # transitions/s: the 2xx answers (a non-2xx moved nothing)
    result.update(
        ok=ok,
        rate=result["tps"] * ok / result["requests"] if result["requests"] else 0.0,
        cpu=cpu / ok * 1000 if ok else float("nan"),
        pg=pg / ok * 1000 if ok else float("nan"),
        rss=peak_rss_mib(pid),
    )
    return result


def line(label: str, r: dict) -> str:
    return (
        f"{label:<10} {r['rate']:8.1f} transitions/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
        f"non-2xx {r['non2xx']}  CPU/transition: server {r['cpu']:5.2f} ms, PostgreSQL {r['pg']:5.2f} ms"
        + (f"  socket errors: {r['socket']}" if r["socket"] else "")
    )


def summary(results: list[dict]) -> dict:
    """Medians over the rounds; counts summed."""
    if not results:
        return {
            "rate": 0.0,
            "p50": float("nan"),
            "p99": float("nan"),
            "cpu": float("nan"),
            "pg": float("nan"),
            "ok": 0,
            "non2xx": 0,
        }
    median = {k: statistics.median(r[k] for r in results) for k in ("rate", "p50", "p99", "cpu", "pg")}
    return {**median, "ok": sum(r["ok"] for r in results), "non2xx": sum(r["non2xx"] for r in results)}


def service_env(url: str) -> dict[str, str]:
    # bench/run.py's (perfbar's) settings, with cheap password hashing for the accounts it makes
    return {
        "LC_DATABASE_URL": url.replace("postgresql://", "postgresql+asyncpg://"),
        "LC_ENV": "test",
        "LC_SECRET_KEY": secrets.token_urlsafe(32),
        "LC_LOG_LEVEL": "warning",
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
    tmp = Path(logs.name)
    try:
        subprocess.run(
            [sys.executable, "-m", "app", "migrate"], cwd=ROOT, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL
        )
        sport, bport = free_port(), free_port()
        # one uvicorn worker each, as bench/run.py runs them
        service = spawn([*UVICORN, "app.main:app", "--port", str(sport)], env, tmp / "service")
        procs.append(service)
        bare = spawn(
            [*UVICORN, "bench.bare_modules:app", "--port", str(bport)], {"BENCH_DSN": url, "PYTHONPATH": str(ROOT)}, tmp / "bare"
        )
        procs.append(bare)
        sbase, bbase = f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{bport}"
        await ready(f"{sbase}/healthz", service)
        await ready(f"{bbase}/health", bare)
        async with httpx.AsyncClient(base_url=sbase, timeout=60) as client, httpx.AsyncClient(base_url=bbase, timeout=60) as bc:
            world = ModulesWorld(client, url)
            await world.build_modules(args.concurrency, args.merchants)
            (await bc.post("/seed", json=world.bare_seed())).raise_for_status()
            load_avg = os.getloadavg()
            print(
                f"service pid {service.pid}, bare reference pid {bare.pid}; wrk {args.threads} threads, "
                f"{args.concurrency} connections, {args.seconds} s per side and module in {args.rounds} "
                f"alternating round(s) (warm-up {args.warmup} s); load average {load_avg[0]:.2f} {load_avg[1]:.2f}",
                flush=True,
            )
            live_from = int(world.live_from.timestamp())
            phases = 0
            results = {}
            for module in args.modules:
                rows, what = CALLS[module]
                print(f"\n{module}: {what}", flush=True)
                if module == "live_bases":
                    await world.fresh_check_in_code()
                svc = Phase("service", sbase, service.pid, args.db, args)
                ref = Phase("bare", bbase, bare.pid, args.db, args)

                def config(bare_side: bool, module: str = module, rows=rows) -> Path:
                    nonlocal phases
                    phases += 1  # a fresh planned-time span per phase (signups)
                    at0 = live_from + phases * PHASE_SPAN
                    name = f"{module}-{'bare' if bare_side else 'service'}-{phases}.tsv"
                    return write_rows(tmp / name, rows(world, bare_side, args.concurrency, at0), args.threads)

                if args.warmup:
                    for phase, side in ((svc, False), (ref, True)):
                        phase.run(config(side), args.warmup, measured=False)
                per_round = max(1, round(args.seconds / args.rounds))
                for n in range(args.rounds):
                    for phase, side in ((svc, False), (ref, True)):
                        profile = ""
                        if args.py_spy and n == 0 and not side:
                            profile = str(
                                Path(args.py_spy).with_name(f"{Path(args.py_spy).stem}-{module}{Path(args.py_spy).suffix}")
                            )
                        phase.run(config(side), per_round, profile=profile)
                results[module] = (svc.summary(), ref.summary())
        load_avg = os.getloadavg()
        print(
            f"\nmedians over the rounds, service / bare (wrk {args.threads} threads, {args.concurrency} connections; "
            f"load average now {load_avg[0]:.2f} {load_avg[1]:.2f}); ratio = transitions/s service/bare, "
            "p99 ratio = service/bare, cpu ratio = bare/service (server + PostgreSQL backends) CPU per transition:"
        )
        print(
            f"{'module':<11} {'transitions/s':>15} {'p50 ms':>15} {'p99 ms':>15} {'server CPU ms':>15} "
            f"{'PG CPU ms':>13} {'ratio':>6} {'p99 ratio':>9} {'cpu ratio':>9}"
        )
        verdicts = []
        for module, (svc, ref) in results.items():
            ratio = svc["rate"] / ref["rate"] if ref["rate"] else float("nan")
            p99_ratio = svc["p99"] / ref["p99"] if ref["p99"] else float("nan")
            cpu_ratio = (ref["cpu"] + ref["pg"]) / (svc["cpu"] + svc["pg"]) if svc["ok"] and ref["ok"] else float("nan")
            print(
                f"{module:<11} {svc['rate']:7.1f} /{ref['rate']:6.1f} {svc['p50']:7.1f} /{ref['p50']:6.1f} "
                f"{svc['p99']:7.1f} /{ref['p99']:6.1f} {svc['cpu']:7.2f} /{ref['cpu']:6.2f} "
                f"{svc['pg']:5.2f} /{ref['pg']:5.2f} {ratio:6.2f} {p99_ratio:9.2f} {cpu_ratio:9.2f}"
            )
            meets = ratio >= args.goal and p99_ratio <= args.p99_goal
            verdicts.append((module, ratio, p99_ratio, meets))
        for module, ratio, p99_ratio, meets in verdicts:
            print(
                f"ratio service/bare {module}: {ratio:.2f}  (p99 ratio {p99_ratio:.2f}; "
                f"{'meets' if meets else 'misses'} ≥ {args.goal:g} and p99 ≤ {args.p99_goal:g}×)"
            )
        print(f"peak RSS: service {peak_rss_mib(service.pid):.0f} MiB, bare {peak_rss_mib(bare.pid):.0f} MiB")
        for name in ("service", "bare"):
            errors = (tmp / name).read_text(errors="replace")
            if "Traceback" in errors:
                print(f"{name} logged errors:\n{errors[-4000:]}")
        failures = [
            f"{module} {side}: {what}"
            for module, pair in results.items()
            for side, r in zip(("service", "bare"), pair, strict=True)
            for what in (["no transition completed"] if not r["ok"] else [])
            + ([f"{r['non2xx']} non-2xx answers"] if r["non2xx"] else [])
        ]
        if args.strict:
            failures += [f"{m} misses the targets" for m, _, _, meets in verdicts if not meets]
        if failures:
            print("failed: " + "; ".join(failures))
            return 1
        return 0
    except BaseException:
        for name in ("service", "bare"):
            path = tmp / name
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
    of each module, as the bare reference's docstrings describe them: SQLAlchemy's own path is seen
    by `before_cursor_execute`, the fast lane's asyncpg calls by a query logger on each pooled
    connection (as tests/test_statement_budget.py counts them)."""
    url = await fresh_database(args.db)
    os.environ.update(service_env(url), LC_RUN_SWEEPER="false")
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    import uvicorn  # noqa: PLC0415
    from sqlalchemy import event  # noqa: PLC0415
    from sqlalchemy.engine import Engine  # noqa: PLC0415
    from sqlalchemy.pool import Pool  # noqa: PLC0415

    from app.main import create_app  # noqa: PLC0415

    statements: list[str] = []
    framing = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")

    def record(sql: str, many: bool = False) -> None:
        sql = " ".join(sql.split())
        if not sql.upper().startswith(framing):
            statements.append(sql + ("  [many]" if many else ""))

    logged: set[int] = set()

    def checkout(dbapi_connection, record_, proxy) -> None:
        raw = getattr(dbapi_connection, "_connection", None)
        if raw is not None and id(raw) not in logged:
            logged.add(id(raw))
            raw.add_query_logger(lambda q: record(q.query))

    event.listen(Pool, "checkout", checkout)
    event.listen(Engine, "before_cursor_execute", lambda conn, cursor, sql, params, context, many: record(sql, many))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    try:
        await ready(f"http://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            world = ModulesWorld(client, url)
            await world.build_modules(1, 1)
            at0 = int(world.live_from.timestamp())
            for module in args.modules:
                rows, what = CALLS[module]
                path, token, body, _ = rows(world, False, 1, at0)[0]
                for n in (1, 2):  # the second call shows the steady state (quota row exists, ...)
                    text = json.dumps(body).replace("@AT@", datetime.fromtimestamp(at0 + n, UTC).isoformat())
                    statements.clear()
                    response = await client.post(
                        path, content=text, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                    )
                print(f"\n{module}: {what}: HTTP {response.status_code}, {len(statements)} statements")
                for sql in statements:
                    print(f"  {sql[: args.sql_width]}")
        return 0
    finally:
        server.should_exit = True
        await task
        await drop_database(args.db)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="wrk seconds per side and module (split into ROUNDS)")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (one creator, provider each)")
    parser.add_argument("--threads", type=int, default=8, help="wrk threads (at most CONCURRENCY)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of warm-up of each side before its module's phases (0: none)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="split each side's SECONDS into this many phases, alternating service and bare"
    )
    parser.add_argument("--merchants", type=int, default=4)
    parser.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES))
    parser.add_argument("--goal", type=float, default=0.5, help="target ratio service/bare (issue #14)")
    parser.add_argument("--p99-goal", type=float, default=2.5, help="target p99 service/bare (issue #14)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a module misses a target")
    parser.add_argument("--db", default="lc_bench_modules", help="database created and dropped (never 'test')")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end (to inspect it)")
    parser.add_argument(
        "--sql",
        action="store_true",
        help="instead: print the SQL the service runs for one transition of each module (service in-process)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="record a py-spy profile of the service during each module's first measured phase (OUT-<module>.svg, "
        "or collapsed stacks if OUT ends in .txt; needs py-spy in the venv)",
    )
    parser.add_argument("--sql-width", type=int, default=300, help="with --sql: characters of each statement shown")
    args = parser.parse_args()
    if args.sql:
        return asyncio.run(show_sql(args))
    if not shutil.which("wrk"):
        parser.error("wrk not found: apt-get install wrk (`make bench-modules` installs it)")
    args.threads = min(args.threads, args.concurrency)
    if min(args.seconds, args.rounds, args.threads) < 1 or args.warmup < 0:
        parser.error("needs seconds, rounds, threads, concurrency ≥ 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
