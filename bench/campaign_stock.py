"""Campaign stock plan at scale (issue #4): the merchant's stock-risk view (查看备货) and the
downloadable list (下载带货单, CSV and XLSX) of one campaign with 10,000 signups, on PostgreSQL.

    make bench-campaigns                                    # 10,000 signups
    .venv/bin/python bench/campaign_stock.py --signups 500  # a quick run

Creates its own database (`lc_scale_campaigns`, dropped at the end unless --keep), migrates it
with `python -m app migrate`, loads the campaign with multi-row `INSERT … SELECT` into the real
tables (rows as the domain code writes them), then calls the real endpoints in-process
(`httpx.ASGITransport` on `app.main.create_app()`) as the merchant, several times each, checks
the answers against independent SQL and prints p50/min/max wall time, the p50 CPU time of the
process (server and client are one process: CPU time is what the machine's other load cannot
inflate) and the peak RSS.

The data (10,000 signups): one published campaign in its live window; 10,000 pre-selected
creators, one signup each; every signup lists the brand shop (the merchant measured) and 0–2 of
49 other shops; 85% of the signups are at `products_submitted` or later (the states the stock
plan counts: 1–3 of the brand's 200 products and one product of each other listed shop), the
rest withdrawn, rejected or expired. The brand's stock plan: 200 products, ~17,000 creator lines.

Targets (10,000 signups, p50 wall time on the 2-core bench machine): the brand's stock-risk view
(~17,000 creator lines, 2.9 MB of JSON) < 1 s, each full download (CSV, XLSX) < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, migrate, pg_url, recreate_database  # noqa: E402

DEFAULT_DB = "lc_scale_campaigns"
TARGETS = {"stock-plan": 1.0, "export csv": 5.0, "export xlsx": 5.0}  # seconds, p50, at 10,000 signups
CAMPAIGN_ID = "cmp_bench_scale"
BRAND = "acc_cm00000000"
PLANNED = ("products_submitted", "stock_confirmed", "ready", "live", "finished")


def _setup_env(db: str) -> None:
    """Before `app` is imported: its settings are read once."""
    os.environ["LC_DATABASE_URL"] = pg_url(db, "postgresql+asyncpg")
    os.environ["LC_RUN_SWEEPER"] = "false"
    os.environ.setdefault("LC_LOG_LEVEL", "WARNING")
    os.environ.setdefault("LC_LOG_JSON", "false")


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process."""
    current = peak = float("nan")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    if peak != peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


# -- data --------------------------------------------------------------------------------------
async def generate(db: str, signups: int) -> dict:
    import asyncpg

    shops = 50 if signups >= 200 else 5
    brand_products, shop_products = 200, 20
    now = datetime.now(UTC).replace(microsecond=0)
    created = now - timedelta(days=20)
    signup_deadline, product_deadline = now - timedelta(days=10), now - timedelta(days=3)
    live_from, live_to = now - timedelta(days=2), now + timedelta(days=5)
    # signup i's state by i % 20: 15% released, 85% at products_submitted or later
    states = (
        ["withdrawn", "merchant_rejected", "expired"]
        + ["products_submitted"] * 4
        + ["stock_confirmed"] * 3
        + ["ready"] * 7
        + ["live"] * 2
        + ["finished"]
    )
    versions = {
        "withdrawn": 2,
        "merchant_rejected": 2,
        "expired": 2,
        "products_submitted": 6,
        "stock_confirmed": 8,
        "ready": 9,
        "live": 10,
        "finished": 11,
    }
    conn = await asyncpg.connect(pg_url(db))
    try:
        await conn.execute("SET synchronous_commit = off")  # a bench load; changes no result
        async with conn.transaction():
            await conn.execute(
                """
                INSERT INTO accounts (id, role, username, password_hash, display_name, created_at)
                VALUES ('acc_co00000000', 'operator', 'bench-operator', 'x', 'Ops', $1)""",
                created,
            )
            await conn.execute(
                """
                INSERT INTO accounts (id, role, username, password_hash, display_name, created_at, shop_name,
                                      alliance_member, experience_score)
                SELECT 'acc_cm' || lpad(i::text, 8, '0'), 'merchant', 'bench-shop-' || i, 'x', '店铺 ' || i, $1,
                       CASE WHEN i = 0 THEN '品牌旗舰店' ELSE '店铺 ' || i END, true, 4.50
                FROM generate_series(0, $2 - 1) AS i""",
                created,
                shops,
            )
            await conn.execute(
                """
                INSERT INTO accounts (id, role, username, password_hash, display_name, created_at, nickname, level,
                                      followers, accepting_orders, contact_phone, contact_wechat)
                SELECT 'acc_cc' || lpad(i::text, 8, '0'), 'creator', 'bench-creator-' || i, 'x', '达人' || i, $1,
                       '达人' || i || CASE WHEN i % 5 = 0 THEN ' "带货, 王"' ELSE '' END, 1 + i % 10, 1000 + i * 37,
                       true, '138' || lpad(i::text, 8, '0'), 'wx_creator_' || i
                FROM generate_series(0, $2 - 1) AS i""",
                created,
                signups,
            )
            # products: the brand's and 20 per other shop; inventory so that about a third is at risk
            await conn.execute(
                """
                INSERT INTO products (id, shop_id, title, brand, price_fen, inventory, general_commission_bp, status,
                                      created_at, updated_at)
                SELECT 'prd_c' || lpad(s::text, 4, '0') || lpad(p::text, 4, '0'), 'acc_cm' || lpad(s::text, 8, '0'),
                       CASE WHEN s = 0 THEN '旗舰商品 ' || p ELSE '商品 ' || s || '-' || p END, 'Brand ' || s,
                       1990 + p * 100, CASE WHEN p % 3 = 0 THEN 100 ELSE 10000000 END, 2000, 'on_sale', $1, $1
                FROM generate_series(0, $2 - 1) AS s, generate_series(0, $3 - 1) AS p
                WHERE p < CASE WHEN s = 0 THEN $3 ELSE $4 END""",
                created,
                shops,
                brand_products,
                shop_products,
            )
            await conn.execute(
                """
                INSERT INTO campaigns (id, title, description, signup_deadline, product_deadline, live_from, live_to,
                                       created_by, created_at, state, version)
                VALUES ($1, '双11 直播间奖励 (bench)', 'bench', $2, $3, $4, $5, 'acc_co00000000', $6,
                        'published', 2)""",
                CAMPAIGN_ID,
                signup_deadline,
                product_deadline,
                live_from,
                live_to,
                created,
            )
            await conn.execute(
                """
                INSERT INTO timers (id, machine, entity_id, action, due_at)
                VALUES ('tmr_bench_close', 'campaign', $1, 'close', $2)""",
                CAMPAIGN_ID,
                live_to,
            )
            await conn.execute(
                """
                INSERT INTO campaign_eligible_creators (campaign_id, creator_id)
                SELECT $1, 'acc_cc' || lpad(i::text, 8, '0') FROM generate_series(0, $2 - 1) AS i""",
                CAMPAIGN_ID,
                signups,
            )
            await conn.execute(
                """
                INSERT INTO campaign_signups (id, campaign_id, creator_id, planned_live_at, contact_phone,
                                              contact_wechat, note, traffic_units, traffic_note, live_session_id,
                                              created_at, state, version)
                SELECT 'csu_b' || lpad(i::text, 8, '0'), $1, 'acc_cc' || lpad(i::text, 8, '0'),
                       $2::timestamptz + make_interval(hours => i % 150), '138' || lpad(i::text, 8, '0'),
                       'wx_creator_' || i, '想带货', CASE WHEN st = ANY($5::text[]) THEN 100 END,
                       CASE WHEN st = ANY($5::text[]) THEN '流量扶持' END,
                       CASE WHEN st IN ('live', 'finished') THEN 'lss_bench_' || i END,
                       $3::timestamptz + make_interval(secs => i), st, ($6::int[])[i % 20 + 1]
                FROM generate_series(0, $4 - 1) AS i, LATERAL (SELECT ($7::text[])[i % 20 + 1] AS st) AS s""",
                CAMPAIGN_ID,
                live_from,
                created,
                signups,
                list(PLANNED),
                [versions[s] for s in states],
                states,
            )
            # listed shops: the brand first, then i % 3 other shops
            await conn.execute(
                """
                INSERT INTO campaign_signup_shops (signup_id, shop_id, position, decision, decision_reason, decided_at,
                                                   stock_confirmed_at)
                SELECT 'csu_b' || lpad(i::text, 8, '0'),
                       'acc_cm' || lpad((CASE WHEN j = 0 THEN 0 ELSE 1 + (i + j * 17) % ($2 - 1) END)::text, 8, '0'),
                       j, CASE st WHEN 'withdrawn' THEN 'pending' WHEN 'expired' THEN 'pending'
                                  WHEN 'merchant_rejected' THEN 'rejected' ELSE 'approved' END,
                       CASE WHEN st = 'merchant_rejected' THEN '库存不足' END,
                       CASE WHEN st NOT IN ('withdrawn', 'expired') THEN $3::timestamptz END,
                       CASE WHEN st IN ('stock_confirmed', 'ready', 'live', 'finished') THEN $3::timestamptz END
                FROM generate_series(0, $1 - 1) AS i, generate_series(0, 2) AS j,
                     LATERAL (SELECT ($4::text[])[i % 20 + 1] AS st) AS s
                WHERE j <= i % 3""",
                signups,
                shops,
                product_deadline - timedelta(days=1),
                states,
            )
            # planned products: 1–3 of the brand's, one of each other listed shop
            await conn.execute(
                """
                INSERT INTO campaign_signup_items (id, signup_id, product_id, shop_id, position, planned_quantity)
                SELECT 'csi_b' || lpad(i::text, 8, '0') || k, 'csu_b' || lpad(i::text, 8, '0'),
                       'prd_c' || lpad(sh::text, 4, '0') || lpad(pr::text, 4, '0'), 'acc_cm' || lpad(sh::text, 8, '0'),
                       k, 10 + (i * 7 + k * 13) % 491
                FROM generate_series(0, $1 - 1) AS i, generate_series(0, 4) AS k,
                     LATERAL (SELECT CASE WHEN k < 3 THEN 0 ELSE 1 + (i + (k - 2) * 17) % ($2 - 1) END AS sh,
                                     CASE WHEN k < 3 THEN (i * 31 + k * 7) % $3 ELSE (i + k) % $4 END AS pr) AS x
                WHERE ($5::text[])[i % 20 + 1] = ANY($6::text[])
                  AND ((k < 3 AND k <= i % 3) OR (k >= 3 AND k - 2 <= i % 3))""",
                signups,
                shops,
                brand_products,
                shop_products,
                states,
                list(PLANNED),
            )
        await conn.execute("ANALYZE")
        counts = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("campaign_signups", "campaign_signup_shops", "campaign_signup_items", "products")
        }
    finally:
        await conn.close()
    return counts


async def expected_plan(db: str, merchant_id: str) -> dict:
    """The stock plan's figures by independent SQL."""
    import asyncpg

    conn = await asyncpg.connect(pg_url(db))
    try:
        row = await conn.fetchrow(
            """
            WITH lines AS (
                SELECT i.product_id, i.planned_quantity FROM campaign_signup_items i
                JOIN campaign_signups s ON s.id = i.signup_id
                JOIN products p ON p.id = i.product_id
                WHERE s.campaign_id = $1 AND s.state = ANY($2::text[]) AND p.shop_id = $3),
            per AS (SELECT l.product_id, sum(l.planned_quantity) AS total, min(p.inventory) AS inventory
                    FROM lines l JOIN products p ON p.id = l.product_id GROUP BY l.product_id)
            SELECT (SELECT count(*) FROM per) AS products, (SELECT count(*) FROM lines) AS lines,
                   (SELECT count(*) FROM per WHERE total > inventory) AS at_risk,
                   (SELECT coalesce(sum(total), 0) FROM per) AS planned""",
            CAMPAIGN_ID,
            list(PLANNED),
            merchant_id,
        )
        return dict(row)
    finally:
        await conn.close()


# -- measurement -------------------------------------------------------------------------------
def check(name: str, body: bytes, expected: dict, merchant: str) -> list[str]:
    import json

    problems = []
    if name == "stock-plan":
        plan = json.loads(body)
        got = {
            "products": len(plan["items"]),
            "lines": sum(len(r["creators"]) for r in plan["items"]),
            "at_risk": sum(r["at_risk"] for r in plan["items"]),
            "planned": sum(r["planned_total"] for r in plan["items"]),
        }
        bad_total = [
            r["product_id"] for r in plan["items"] if r["planned_total"] != sum(c["planned_quantity"] for c in r["creators"])
        ]
        if bad_total:
            problems.append(f"{merchant} stock-plan: planned_total != sum of creators for {bad_total[:3]}")
    elif name == "export csv":
        text = body.decode("utf-8")
        if not text.startswith("\ufeff"):
            problems.append("csv without BOM")
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1:]
        got = {
            "lines": len(rows),
            "planned": None,
            "products": len({r[0] for r in rows}),
            "at_risk": len({r[0] for r in rows if r[8] == "yes"}),
        }
        got["planned"] = sum(int(r[6]) for r in rows)
    else:
        from openpyxl import load_workbook

        sheet = load_workbook(io.BytesIO(body), read_only=True).active
        rows = list(sheet.iter_rows(min_row=2, values_only=True))
        got = {
            "lines": len(rows),
            "products": len({r[0] for r in rows}),
            "at_risk": len({r[0] for r in rows if r[8] is True}),
            "planned": sum(int(r[6]) for r in rows),
        }
    for key, value in got.items():
        if value != expected[key]:
            problems.append(f"{merchant} {name}: {key} {value} != {expected[key]} (independent SQL)")
    return problems


async def measure(db: str, repeat: int, merchants: list[str]) -> tuple[list[dict], list[str]]:
    import httpx

    from app.core.config import get_settings
    from app.db.session import make_engine
    from app.domain.accounts import start_session
    from app.main import create_app

    engine = make_engine(pg_url(db, "postgresql+asyncpg"))
    app = create_app(get_settings(), engine=engine)
    results, problems = [], []
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120) as client:
            for merchant in merchants:
                expected = await expected_plan(db, merchant)
                async with app.state.sessionmaker() as session:  # a token needs a session
                    token = (await start_session(session, merchant, "merchant")).access_token
                    await session.commit()
                headers = {"Authorization": f"Bearer {token}"}
                for name, path in (
                    ("stock-plan", f"/v1/campaigns/{CAMPAIGN_ID}/stock-plan"),
                    ("export csv", f"/v1/campaigns/{CAMPAIGN_ID}/stock-plan/export?format=csv"),
                    ("export xlsx", f"/v1/campaigns/{CAMPAIGN_ID}/stock-plan/export?format=xlsx"),
                ):
                    times, cpu, size, body = [], [], 0, b""
                    for attempt in range(repeat + 1):  # the first call warms up (not counted)
                        started, cpu_started = time.perf_counter(), time.process_time()
                        response = await client.get(path, headers=headers)
                        elapsed = time.perf_counter() - started
                        if response.status_code != 200:
                            raise SystemExit(f"{name}: {response.status_code} {response.text[:300]}")
                        if attempt:
                            times.append(elapsed)
                            cpu.append(time.process_time() - cpu_started)
                        body, size = response.content, len(response.content)
                    problems += check(name, body, expected, merchant)
                    results.append(
                        {
                            "merchant": merchant,
                            "name": name,
                            "p50": statistics.median(times),
                            "cpu": statistics.median(cpu),
                            "min": min(times),
                            "max": max(times),
                            "bytes": size,
                            "lines": expected["lines"],
                            "products": expected["products"],
                        }
                    )
    finally:
        await engine.dispose()
    return results, problems


async def run(args: argparse.Namespace) -> int:
    print(f"campaign stock plan with {args.signups} signups: database {args.db}", flush=True)
    await recreate_database(args.db)
    try:
        started = time.perf_counter()
        await asyncio.to_thread(migrate, args.db)
        migrated = time.perf_counter()
        counts = await generate(args.db, args.signups)
        print(
            f"data: {counts['campaign_signups']} signups, {counts['campaign_signup_shops']} listed shops, "
            f"{counts['campaign_signup_items']} planned products, {counts['products']} products "
            f"(migrate {migrated - started:.1f} s, load {time.perf_counter() - migrated:.1f} s)",
            flush=True,
        )
        import app.main  # noqa: F401  (the baseline RSS includes the service's imports)

        rss_before, _ = rss_mib()
        results, problems = await measure(args.db, args.repeat, [BRAND, "acc_cm00000001"])
        full = args.signups >= 10_000
        missed = []
        for r in results:
            who = "brand shop" if r["merchant"] == BRAND else "other shop"
            target = TARGETS[r["name"]]
            verdict = "" if not full else ("  ok" if r["p50"] < target else "  MISSED")
            if full and r["merchant"] == BRAND and r["p50"] >= target:
                missed.append(r["name"])
            print(
                f"  {who:<10} {r['name']:<11} p50 {r['p50'] * 1000:8.1f} ms  min {r['min'] * 1000:8.1f}  "
                f"max {r['max'] * 1000:8.1f}  cpu {r['cpu'] * 1000:7.1f} ms  ({r['products']} products, {r['lines']} lines, "
                f"{r['bytes'] / 1024:,.0f} KiB){verdict}",
                flush=True,
            )
        rss_now, rss_peak = rss_mib()
        print(
            f"peak RSS {rss_peak:.0f} MiB (before the requests {rss_before:.0f} MiB, after {rss_now:.0f} MiB); "
            f"targets at 10,000 signups: stock-plan < {TARGETS['stock-plan'] * 1000:.0f} ms, downloads "
            f"< {TARGETS['export csv']:.0f} s: "
            + ("MISSED " + ", ".join(missed) if missed else "met" if full else "n/a (fewer signups)"),
            flush=True,
        )
        for problem in problems:
            print(f"PROBLEM: {problem}", flush=True)
        return 1 if problems else 0
    finally:
        if not args.keep:
            await recreate_database(args.db, drop_only=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=10_000, help="signups in the campaign (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of each request (default 5)")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database to create and drop (default {DEFAULT_DB})")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    _setup_env(args.db)
    sys.path.insert(0, str(ROOT))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
