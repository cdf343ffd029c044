"""Incentives at scale (issue #7): one month's computation with 10,000 providers, 100,000
merchants and 10,000,000 orders on PostgreSQL.

    make bench-incentives                                  # full scale (a few minutes of loading)
    .venv/bin/python bench/incentives_scale.py --scale 0.01   # a quick run

Creates its own database (`lc_scale_incentives`, dropped at the end unless --keep), migrates it
with `python -m app migrate`, generates the facts with server-side SQL (`INSERT … SELECT FROM
generate_series`) into the real tables, runs VACUUM (ANALYZE), then times `compute_month` exactly as
`python -m app compute-incentives PROGRAM MONTH` runs it (one session, commit), twice: the first
computation and a recomputation of the drafts. It then checks the result against independent SQL
(statement count, one provider's dimension-1 merchants and GMV figures, its total) and prints
the timings and the peak RSS. Target: one month's computation < 60 s at full scale.

The data (scale 1): 10,000 providers (90% certified), 100,000 merchants with one product each,
2,000 creators; every merchant has a contract (85% commission_split) with one provider, 10% a
second one with another provider (the earliest activated wins), some ended during or before the
month, 2% only proposed; 70% of the merchants go live 1–3 times in the month; every merchant has
a tier (V0–V4) for the month and the three before; 10,000,000 orders in the month and 5,000,000
in the month before (80% channel `live`, 7% refunded). The computed month is the last complete
calendar month (Asia/Shanghai).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, migrate, pg_url, recreate_database  # noqa: E402

DEFAULT_DB = "lc_scale_incentives"
TARGET_SECONDS = 60.0


def _setup_env(db: str) -> None:
    """Before `app` is imported: its settings are read once."""
    os.environ["LC_DATABASE_URL"] = pg_url(db, "postgresql+asyncpg")
    os.environ.setdefault("LC_RUN_SWEEPER", "false")
    os.environ.setdefault("LC_LOG_LEVEL", "WARNING")
    os.environ.setdefault("LC_LOG_JSON", "false")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def last_complete_month(today: date) -> str:
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


# -- data --------------------------------------------------------------------------------------
async def _timed(conn, label: str, sql: str, *args) -> None:
    started = time.perf_counter()
    status = await conn.execute(sql, *args)
    print(f"  {label:<44} {status.split()[-1]:>10} rows  {time.perf_counter() - started:7.1f} s", flush=True)


async def generate(db: str, scale: float, month: str, no_vacuum: bool = False) -> dict:
    """Fill the real tables with server-side SQL. Returns the sizes and the program id."""
    import asyncpg

    from app.domain.incentives import month_start, shift_month

    providers = max(3, round(10_000 * scale))
    merchants = max(12, round(100_000 * scale))
    creators = max(2, round(2_000 * scale))
    orders = max(100, round(10_000_000 * scale))
    prev_orders = orders // 2
    ms, me = month_start(month), month_start(shift_month(month, 1))
    ps = month_start(shift_month(month, -1))
    created = ms.replace(year=ms.year - 1)
    months = [shift_month(month, -i) for i in (3, 2, 1, 0)]
    program_id = "ipg_bench_scale"

    conn = await asyncpg.connect(pg_url(db))
    try:
        await conn.execute("SET synchronous_commit = off")  # a bench load; changes no result
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SELECT setseed(0.42)")
        # accounts: providers, merchants, creators, one operator (ids are opaque, prefixed strings)
        await _timed(
            conn,
            "accounts (providers)",
            """
            INSERT INTO accounts (id, role, username, password_hash, display_name, created_at, org_name, certified)
            SELECT 'acc_bp' || lpad(i::text, 8, '0'), 'service_provider', 'bench-provider-' || i, 'x',
                   '服务商 ' || i, $1, '服务商 ' || i, (i % 10) <> 0
            FROM generate_series(0, $2 - 1) AS i""",
            created,
            providers,
        )
        await _timed(
            conn,
            "accounts (merchants)",
            """
            INSERT INTO accounts (id, role, username, password_hash, display_name, created_at, shop_name,
                                  alliance_member, experience_score)
            SELECT 'acc_bm' || lpad(i::text, 8, '0'), 'merchant', 'bench-merchant-' || i, 'x',
                   '店铺 ' || i, $1, '店铺 ' || i, true, 4.50
            FROM generate_series(0, $2 - 1) AS i""",
            created,
            merchants,
        )
        await _timed(
            conn,
            "accounts (creators)",
            """
            INSERT INTO accounts (id, role, username, password_hash, display_name, created_at, nickname, level,
                                  followers, accepting_orders)
            SELECT 'acc_bc' || lpad(i::text, 8, '0'), 'creator', 'bench-creator-' || i, 'x', '达人 ' || i, $1,
                   '达人 ' || i, 1 + i % 10, 1000 * i, true
            FROM generate_series(0, $2 - 1) AS i""",
            created,
            creators,
        )
        await conn.execute(
            """
            INSERT INTO accounts (id, role, username, password_hash, display_name, created_at)
            VALUES ('acc_bench_operator', 'operator', 'bench-operator', 'x', 'Ops', $1)""",
            created,
        )
        await _timed(
            conn,
            "products (one per merchant)",
            """
            INSERT INTO products (id, shop_id, title, price_fen, inventory, status, created_at, updated_at)
            SELECT 'prd_bm' || lpad(i::text, 8, '0'), 'acc_bm' || lpad(i::text, 8, '0'), '商品 ' || i,
                   1000 + i % 9000, 1000, 'on_sale', $1, $1
            FROM generate_series(0, $2 - 1) AS i""",
            created,
            merchants,
        )
        # contracts: a primary one per merchant; 10% a second one with another provider.
        # activated 1–360 days before the month; 5% ended during the month, 3% before it, 2% proposed.
        await _timed(
            conn,
            "provider_contracts",
            """
            WITH c AS (
                SELECT m, k,
                       CASE WHEN k = 0 THEN m % $2
                            ELSE (m % $2 + 1 + (m / $2) % ($2 - 1)) % $2 END AS p,
                       random() AS r, random() AS r2, random() AS r3
                FROM generate_series(0, $1 - 1) AS m, generate_series(0, 1) AS k
                WHERE k = 0 OR m % 10 = 3),
            d AS (
                SELECT *, CASE WHEN r < 0.02 THEN NULL
                               ELSE $3::timestamptz - make_interval(days => 1 + (r2 * 359)::int,
                                                                    secs => (r3 * 86000)::int) END AS act,
                          CASE WHEN r >= 0.02 AND r < 0.05
                               THEN $3::timestamptz - make_interval(secs => (r3 * 86000)::int)
                               WHEN r >= 0.05 AND r < 0.10
                               THEN $3::timestamptz + make_interval(days => (r2 * 27)::int,
                                                                    secs => 1 + (r3 * 86000)::int)
                          END AS ended
                FROM c)
            INSERT INTO provider_contracts (id, provider_id, merchant_id, mode, created_at, activated_at, ended_at,
                                            end_reason, state, version)
            SELECT 'pct_b' || k || lpad(m::text, 8, '0'), 'acc_bp' || lpad(p::text, 8, '0'),
                   'acc_bm' || lpad(m::text, 8, '0'),
                   CASE WHEN k = 0 AND (m::bigint * 2654435761 % 4294967296) / 30 % 7 = 0 THEN 'service_fee'
                        ELSE 'commission_split' END,
                   coalesce(act, $3::timestamptz) - interval '1 hour', act,
                   CASE WHEN act IS NOT NULL THEN ended END,
                   CASE WHEN act IS NOT NULL AND ended IS NOT NULL THEN 'bench' END,
                   CASE WHEN act IS NULL THEN 'proposed' WHEN ended IS NULL THEN 'active' ELSE 'ended' END,
                   CASE WHEN act IS NULL THEN 1 WHEN ended IS NULL THEN 2 ELSE 3 END
            FROM d""",
            merchants,
            providers,
            ms,
        )
        await _timed(
            conn,
            "live_sessions (70% of merchants, 1-3 each)",
            """
            INSERT INTO live_sessions (id, external_id, host_id, started_at, ended_at, peak_viewers, room_url)
            SELECT 'lss_b' || lpad(m::text, 8, '0') || j, 'bench-live-' || m || '-' || j,
                   'acc_bm' || lpad(m::text, 8, '0'), s, s + interval '2 hours', (random() * 5000)::int,
                   'https://live.example/room/' || m
            FROM generate_series(0, $1 - 1) AS m, generate_series(1, 3) AS j,
                 LATERAL (SELECT $2::timestamptz + ((random() + 0 * m * j)
                                                     * ($3::timestamptz - $2::timestamptz - interval '3 hours'))
                          AS s) AS t
            WHERE (m::bigint * 2654435761 % 4294967296) % 10 < 7
              AND j <= 1 + (m::bigint * 2654435761 % 4294967296) / 10 % 3""",
            merchants,
            ms,
            me,
        )
        await _timed(
            conn,
            "merchant_tiers (4 months)",
            """
            INSERT INTO merchant_tiers (id, merchant_id, month, tier)
            SELECT 'mtr_b' || lpad(m::text, 8, '0') || '_' || mo, 'acc_bm' || lpad(m::text, 8, '0'), mo,
                   CASE WHEN r < 0.55 THEN 0 WHEN r < 0.75 THEN 1 WHEN r < 0.90 THEN 2 WHEN r < 0.97 THEN 3
                        ELSE 4 END
            FROM generate_series(0, $1 - 1) AS m, unnest($2::text[]) AS mo,
                 LATERAL (SELECT random() + 0 * m + 0 * length(mo) AS r) AS t
            """,
            merchants,
            months,
        )
        await conn.execute(
            """
            INSERT INTO incentive_programs (id, name, month_from, month_to, coefficient_bp, v3_reward_fen,
                                            v4_reward_fen, min_active_merchants, created_at)
            VALUES ($1, 'bench program', $2, $2, 1000, 300000, 1000000, 3, $3)""",
            program_id,
            month,
            created,
        )

        # orders: drop the secondary indexes and foreign keys of sales_orders for the load and
        # build them again afterwards (same definitions, read from the catalog)
        constraints = await conn.fetch("""
            SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
            WHERE conrelid = 'sales_orders'::regclass AND contype IN ('f', 'u')""")
        indexes = await conn.fetch("""
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.tablename = 'sales_orders' AND i.schemaname = current_schema()
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""")
        for c in constraints:
            await conn.execute(f'ALTER TABLE sales_orders DROP CONSTRAINT "{c["conname"]}"')
        for i in indexes:
            await conn.execute(f'DROP INDEX "{i["indexname"]}"')
        order_sql = """
            INSERT INTO sales_orders (id, external_id, shop_id, product_id, creator_id, channel, live_session_id,
                                      amount_fen, status, paid_at, updated_at)
            SELECT 'ord_b' || $5 || lpad(i::text, 9, '0'), 'bench-' || $5 || '-' || i,
                   'acc_bm' || lpad(m::text, 8, '0'), 'prd_bm' || lpad(m::text, 8, '0'),
                   CASE WHEN r1 < 0.6 THEN 'acc_bc' || lpad((i % $2)::text, 8, '0') END,
                   CASE WHEN r1 < 0.8 THEN 'live' ELSE 'video' END, NULL,
                   100 + (r2 * 99900)::bigint,
                   CASE WHEN r3 < 0.07 THEN 'refunded' ELSE 'paid' END, t, t + interval '1 minute'
            FROM generate_series(0, $1 - 1) AS i,
                 LATERAL (SELECT (($6::bigint * (i::bigint * 2654435761 % 4294967296)) / 4294967296)::int AS m,
                                 random() AS r1, random() AS r2, random() AS r3,
                                 $3::timestamptz + random() * ($4::timestamptz - $3::timestamptz) AS t) AS x"""
        await _timed(conn, f"sales_orders ({month})", order_sql, orders, creators, ms, me, "m", merchants)
        await _timed(conn, f"sales_orders ({shift_month(month, -1)})", order_sql, prev_orders, creators, ps, ms, "p", merchants)
        started = time.perf_counter()
        for i in indexes:
            await conn.execute(i["indexdef"])
        for c in constraints:
            await conn.execute(f'ALTER TABLE sales_orders ADD CONSTRAINT "{c["conname"]}" {c["def"]}')
        print(f"  {'sales_orders indexes and constraints':<44} {'':>10}       {time.perf_counter() - started:7.1f} s", flush=True)
        # VACUUM as autovacuum would have done to tables that old: without it, the first scan after
        # the bulk load sets the hint bits of every fresh row (a write of the whole table) inside
        # the measured computation. --no-vacuum measures that cold case.
        started = time.perf_counter()
        command = "ANALYZE" if no_vacuum else "VACUUM (ANALYZE)"
        await conn.execute(command)
        print(f"  {command:<44} {'':>10}       {time.perf_counter() - started:7.1f} s", flush=True)
    finally:
        await conn.close()
    return {
        "providers": providers,
        "merchants": merchants,
        "orders": orders,
        "prev_orders": prev_orders,
        "program_id": program_id,
    }


# -- measurement -------------------------------------------------------------------------------
async def compute_once(program_id: str, month: str):
    """What `python -m app compute-incentives PROGRAM MONTH` does: one session, commit."""
    from app.core.config import get_settings
    from app.db.session import make_engine, make_sessionmaker
    from app.domain.incentives import compute_month

    engine = make_engine(get_settings().database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            started = time.perf_counter()
            result = await compute_month(session, program_id, month, progress=lambda done, total: None)
            await session.commit()
            return result, time.perf_counter() - started
    finally:
        await engine.dispose()


async def verify(db: str, program_id: str, month: str, result) -> list[str]:
    """Independent SQL checks of the computed statements. Returns the problems found."""
    import json

    import asyncpg

    from app.domain.incentives import month_start, shift_month

    ms, me = month_start(month), month_start(shift_month(month, 1))
    ps = month_start(shift_month(month, -1))
    problems: list[str] = []
    conn = await asyncpg.connect(pg_url(db))
    try:
        expected = await conn.fetchval(
            """
            SELECT count(DISTINCT provider_id) FROM provider_contracts
            WHERE activated_at < $2 AND (ended_at IS NULL OR ended_at > $1)""",
            ms,
            me,
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM incentive_statements WHERE program_id = $1 AND month = $2", program_id, month
        )
        print(
            f"  statements {stored} (independent count of providers with a contract active in the month:"
            f" {expected}), eligible {result.eligible}, total {result.total_fen} fen"
        )
        if not stored == expected == result.statements:
            problems.append(f"statements: stored {stored}, expected {expected}, reported {result.statements}")
        row = await conn.fetchrow(
            """
            SELECT id, provider_id, dimension1, dimension2, total_fen FROM incentive_statements
            WHERE program_id = $1 AND month = $2 AND eligible
            ORDER BY json_array_length(dimension1) DESC, provider_id LIMIT 1""",
            program_id,
            month,
        )
        if row is None:
            problems.append("no eligible statement")
            return problems
        d1 = json.loads(row["dimension1"])
        d2 = json.loads(row["dimension2"])
        # which merchants this provider gets in dimension 1: DISTINCT ON instead of ROW_NUMBER()
        merchants = [
            r["merchant_id"]
            for r in await conn.fetch(
                """
            WITH lm AS (SELECT DISTINCT host_id FROM live_sessions WHERE started_at >= $1 AND started_at < $2),
            act AS (SELECT pc.provider_id, count(DISTINCT lm.host_id) AS n FROM provider_contracts pc
                    LEFT JOIN lm ON lm.host_id = pc.merchant_id
                    WHERE pc.activated_at < $2 AND (pc.ended_at IS NULL OR pc.ended_at > $1)
                    GROUP BY pc.provider_id),
            el AS (SELECT act.provider_id FROM act JOIN accounts a ON a.id = act.provider_id
                   WHERE a.certified AND act.n >= (SELECT min_active_merchants FROM incentive_programs
                                                   WHERE id = $3)),
            winner AS (SELECT DISTINCT ON (pc.merchant_id) pc.merchant_id, pc.provider_id
                       FROM provider_contracts pc JOIN el ON el.provider_id = pc.provider_id
                       WHERE pc.mode = 'commission_split' AND pc.activated_at < $2
                         AND (pc.ended_at IS NULL OR pc.ended_at >= $2)
                       ORDER BY pc.merchant_id, pc.activated_at, pc.id)
            SELECT merchant_id FROM winner WHERE provider_id = $4 ORDER BY merchant_id""",
                ms,
                me,
                program_id,
                row["provider_id"],
            )
        ]
        if merchants != [line["merchant_id"] for line in d1]:
            problems.append(f"{row['provider_id']}: dimension-1 merchants differ from the independent query")
        sums = {
            r["shop_id"]: (r["gmv"], r["prev"])
            for r in await conn.fetch(
                """
            SELECT shop_id, sum(amount_fen) FILTER (WHERE paid_at >= $2) AS gmv,
                   sum(amount_fen) FILTER (WHERE paid_at < $2) AS prev
            FROM sales_orders WHERE shop_id = ANY($4::text[]) AND channel = 'live' AND status = 'paid'
              AND paid_at >= $1 AND paid_at < $3 GROUP BY shop_id""",
                ps,
                ms,
                me,
                merchants,
            )
        }
        coefficient = await conn.fetchval("SELECT coefficient_bp FROM incentive_programs WHERE id = $1", program_id)
        for line in d1:
            gmv, prev = sums.get(line["merchant_id"], (0, 0))
            gmv, prev = int(gmv or 0), int(prev or 0)
            voucher = max(0, gmv - prev) * coefficient // 10000
            if (line["gmv_fen"], line["gmv_prev_fen"], line["voucher_fen"]) != (gmv, prev, voucher):
                problems.append(f"{line['merchant_id']}: {line} != gmv {gmv}, prev {prev}, voucher {voucher}")
        total = sum(line["voucher_fen"] for line in d1) + sum(line["reward_fen"] for line in d2)
        if total != row["total_fen"]:
            problems.append(f"{row['id']}: total_fen {row['total_fen']} != {total}")
        gmv_total = sum(line["gmv_fen"] for line in d1)
        print(
            f"  spot check {row['provider_id']}: {len(d1)} dimension-1 merchants, GMV {gmv_total} fen "
            f"(independent SUM: {sum(int(v[0] or 0) for v in sums.values())}), {len(d2)} dimension-2, "
            f"total {row['total_fen']} fen: {'ok' if not problems else 'MISMATCH'}"
        )
        awards = await conn.fetchval("SELECT count(*) FROM incentive_tier_awards WHERE month = $1", month)
        lines2 = await conn.fetchval(
            """
            SELECT coalesce(sum(json_array_length(dimension2)), 0) FROM incentive_statements
            WHERE program_id = $1 AND month = $2""",
            program_id,
            month,
        )
        if awards != lines2:
            problems.append(f"tier awards {awards} != dimension-2 lines {lines2}")
    finally:
        await conn.close()
    return problems


async def run(args: argparse.Namespace) -> int:
    from app.main import create_app
    from app.state import clock

    create_app()  # as the CLI command does (registers the modules' hooks)
    month = args.month or last_complete_month(clock.local_date(datetime.now(UTC)))
    print(f"incentives at scale {args.scale:g}: database {args.db}, month {month}", flush=True)
    await recreate_database(args.db)
    try:
        started = time.perf_counter()
        await asyncio.to_thread(migrate, args.db)
        print(f"  {'migrate':<44} {'':>10}       {time.perf_counter() - started:7.1f} s", flush=True)
        started = time.perf_counter()
        sizes = await generate(args.db, args.scale, month, args.no_vacuum)
        load = time.perf_counter() - started
        print(
            f"data: {sizes['providers']} providers, {sizes['merchants']} merchants, {sizes['orders']} orders "
            f"in {month} (+{sizes['prev_orders']} the month before), loaded in {load:.0f} s",
            flush=True,
        )
        timings = []
        for attempt in ("compute", "recompute"):
            result, seconds = await compute_once(sizes["program_id"], month)
            timings.append(seconds)
            print(
                f"{attempt:<10} {seconds:8.2f} s  ({result.statements} statements, {result.eligible} eligible, "
                f"{result.total_fen} fen)",
                flush=True,
            )
        problems = await verify(args.db, sizes["program_id"], month, result)
        verdict = "met" if max(timings) < TARGET_SECONDS else "MISSED"
        print(
            f"one month's compute: {timings[0]:.2f} s (recompute {timings[1]:.2f} s); target < {TARGET_SECONDS:.0f} s"
            f" at full scale: {verdict}{'' if args.scale == 1 else f' (scale {args.scale:g})'}; "
            f"peak RSS {peak_rss_mib():.0f} MiB",
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
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data (default 1)")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database to create and drop (default {DEFAULT_DB})")
    parser.add_argument("--month", help="YYYY-MM (default: the last complete month)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-vacuum", action="store_true", help="only ANALYZE after the load (cold hint bits)")
    args = parser.parse_args(argv)
    _setup_env(args.db)
    sys.path.insert(0, str(ROOT))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
