"""Task-order benchmark: create+accept chains over HTTP, driven by wrk, against the service and the
bare asyncpg reference (`bench/bare_app.py`) in alternating rounds, in the shape of perfbar (the
judged tool, /work/shared/tools/perfbar) with the project's own wrk script (`bench/chain.lua`).

    make bench                                   # 3 rounds of 12 s per side, 8 threads, 32 connections
    .venv/bin/python bench/run.py --seconds 3 --rounds 1       # a quick look
    .venv/bin/python bench/run.py --goal 0.5                   # exit 1 below that ratio

The load generator is wrk (Debian's package; `make bench` installs it): THREADS threads and
CONNECTIONS connections; each thread alternates create and accept, accepting the orders its own
creates returned (chain.lua, as perfbar's). chain.lua reads its per-thread paths, tokens and
bodies from a temporary file given as its argument (after `--`). wrk is written in C, so it takes
a small share of the two cores where the former httpx generator took about half of them and
flattered the service's ratio.

The service runs as one uvicorn worker (`uvicorn app.main:app`, LC_ENV=test as perfbar runs it,
LC_LOG_LEVEL=warning, --no-access-log) on its own fresh database, migrated first; the reference
(one uvicorn worker too) on another. Both are created at the start and dropped at the end (`--db`,
default `lc_bench_<random>`, the reference's `<db>_bare`). The service's set-up goes through its
API, as perfbar's does: the bootstrap operator (LC_BOOTSTRAP_OPERATOR_*) makes one merchant (xingtu
binding, top-up, product) and one creator per wrk thread. Each round starts the service afresh
and loads it for SECONDS, then the reference likewise.

Prints, per round and side: transitions/s (wrk's Requests/sec: a create or an accept is one
transition), p50 and p99 latency (wrk --latency), non-2xx responses, CPU per transition of the
server process (user + system from /proc/<pid>/stat over the phase, divided by wrk's request
count) and of the database's PostgreSQL backends, and the server's peak RSS (VmHWM). Then the
medians, the ratios service/bare and last a line in perfbar's shape:
`create+accept over HTTP on PostgreSQL: service N/s vs bare M/s, ratio R (p99 X ms vs Y ms)`.
Exit 0 unless a phase completed nothing, answered non-2xx, or (with --goal) the ratio is below it.

The former httpx full-lifecycle phase (create → accept → live start → live end → approve) is
dropped: the lifecycle is covered by the tests and `make stress`; this measures the hot pair.
`--py-spy OUT` profiles the service during its first round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    PASSWORD,
    World,
    backend_cpu_seconds,
    cpu_seconds,
    free_port,
    migrate,
    order_body,
    peak_rss_mib,
    pg_url,
    ready,
    recreate_database,
    spawn,
    stop,
)

CHAIN = Path(__file__).with_name("chain.lua")
UVICORN = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]


def service_env(db: str) -> dict[str, str]:
    return {
        "LC_DATABASE_URL": pg_url(db, "postgresql+asyncpg"),
        "LC_ENV": "test",
        "LC_LOG_LEVEL": "warning",
        "LC_SECRET_KEY": secrets.token_urlsafe(32),
        "LC_BOOTSTRAP_OPERATOR_USERNAME": "bench-operator",
        "LC_BOOTSTRAP_OPERATOR_PASSWORD": PASSWORD,
    }


async def service_rows(base: str, threads: int) -> list[tuple[str, ...]]:
    """chain.lua's lines for the service: per thread, its own merchant and creator."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        world = World(client)
        await world.build(threads, threads)
    start = (datetime.now(UTC) + timedelta(days=5)).replace(second=0, microsecond=0)
    token = {who: headers["Authorization"].removeprefix("Bearer ") for who, headers in world.tokens.items()}
    return [
        (
            "/v1/task-orders",
            "/v1/task-orders/",
            "/accept",
            token[merchant],
            token[creator],
            json.dumps(order_body(creator, product, start), ensure_ascii=False),
        )
        for (merchant, product), creator in zip(world.merchants, world.creators, strict=True)
    ]


def bare_rows(threads: int) -> list[tuple[str, ...]]:
    """chain.lua's lines for the reference: per thread, its own wallet (as one merchant per thread)."""
    return [
        (
            "/orders",
            "/orders/",
            "/accept",
            "",
            "",
            json.dumps({"merchant_id": f"w{i}", "creator_id": f"c{i}", "amount_fen": 1000}),
        )
        for i in range(threads)
    ]


def write_rows(path: Path, rows: list[tuple[str, ...]]) -> Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def milliseconds(text: str, unit: str) -> float:
    return float(text) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(out: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    latency = {q: re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M) for q in (50, 99)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket = re.search(r"Socket errors: (.*)", out)
    return {
        "tps": float(rps.group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        **{f"p{q}": milliseconds(*m.groups()) if m else float("nan") for q, m in latency.items()},
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket": socket.group(1) if socket else "",
    }


def load(base: str, config: Path, proc: subprocess.Popen, db: str, args) -> dict:
    """One phase: wrk on `base` for SECONDS, and what the server process and its backends spent."""
    cpu, pg = cpu_seconds(proc.pid), backend_cpu_seconds(db)
    wrk = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.seconds}s",
            "--latency",
            "-s",
            str(CHAIN),
            base,
            "--",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=args.seconds + 120,
    )
    cpu, pg = cpu_seconds(proc.pid) - cpu, backend_cpu_seconds(db) - pg
    if wrk.returncode:
        raise RuntimeError(f"wrk exited with {wrk.returncode}:\n{wrk.stdout}{wrk.stderr}")
    result = parse_wrk(wrk.stdout)
    n = result["requests"]
    result.update(cpu=cpu / n * 1000 if n else float("nan"), pg=pg / n * 1000 if n else float("nan"), rss=peak_rss_mib(proc.pid))
    return result


def line(label: str, r: dict) -> str:
    return (
        f"{label:<16} {r['tps']:8.0f} transitions/s  p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
        f"non-2xx {r['non2xx']}  CPU/transition: server {r['cpu']:5.2f} ms, PostgreSQL {r['pg']:5.2f} ms  "
        f"peak RSS {r['rss']:4.0f} MiB" + (f"  socket errors: {r['socket']}" if r["socket"] else "")
    )


def summary(results: list[dict]) -> dict:
    """Medians over the rounds; non-2xx summed, peak RSS the highest."""
    median = {k: statistics.median(r[k] for r in results) for k in ("tps", "p50", "p99", "cpu", "pg")}
    return {
        **median,
        "non2xx": sum(r["non2xx"] for r in results),
        "rss": max(r["rss"] for r in results),
        "requests": sum(r["requests"] for r in results),
        "socket": "",
    }


async def bench(args, logs: Path) -> int:
    db = args.db or f"lc_bench_{secrets.token_hex(3)}"
    bare_db = f"{db}_bare"
    env = service_env(db)
    bare_env = {"BENCH_DSN": pg_url(bare_db), "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen] = []

    async def start(name: str, target: str, environ: dict[str, str], health: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = spawn([*UVICORN, target, "--port", str(port)], environ, logs / name)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        await ready(base + health, proc)
        return proc, base

    try:
        for name in (db, bare_db):
            await recreate_database(name)
        migrate(db)
        proc, base = await start("service-setup", "app.main:app", env, "/healthz")
        service_config = write_rows(logs / "service.tsv", await service_rows(base, args.threads))
        bare_config = write_rows(logs / "bare.tsv", bare_rows(args.threads))
        stop([proc])
        print(
            f"wrk: {args.threads} threads, {args.connections} connections, {args.seconds} s per phase, "
            f"{args.rounds} round(s); databases {db}, {bare_db}",
            flush=True,
        )
        results: dict[str, list[dict]] = {"service": [], "bare": []}
        for n in range(1, args.rounds + 1):
            proc, base = await start(f"service-{n}", "app.main:app", env, "/healthz")
            spy = None
            if args.py_spy and n == 1:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "-o",
                        args.py_spy,
                        "-f",
                        "raw" if args.py_spy.endswith(".txt") else "flamegraph",
                        "-p",
                        str(proc.pid),
                        "-d",
                        str(args.seconds),
                        "-r",
                        "200",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            results["service"].append(load(base, service_config, proc, db, args))
            if spy:
                spy.wait()
            stop([proc])
            print(line(f"round {n} service", results["service"][-1]), flush=True)
            proc, base = await start(f"bare-{n}", "bench.bare_app:app", bare_env, "/health")
            async with httpx.AsyncClient(base_url=base) as client:
                (
                    await client.post("/seed", json={"wallets": [f"w{i}" for i in range(args.threads)], "available_fen": 10**12})
                ).raise_for_status()
            results["bare"].append(load(base, bare_config, proc, bare_db, args))
            stop([proc])
            print(line(f"round {n} bare", results["bare"][-1]), flush=True)
    except BaseException:
        for path in sorted(logs.iterdir()):
            if path.suffix != ".tsv" and path.stat().st_size:
                print(f"--- {path.name} log (tail) ---\n{path.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        stop(procs)
        for name in (db, bare_db):
            await recreate_database(name, drop_only=True)

    svc, ref = summary(results["service"]), summary(results["bare"])
    print(f"\nmedians of {args.rounds} round(s) (non-2xx: total; peak RSS: highest):")
    print(line("service", svc))
    print(line("bare", ref))
    ratio = svc["tps"] / ref["tps"] if ref["tps"] else float("nan")
    print(
        f"ratio service/bare {ratio:.2f}, p99 ratio {svc['p99'] / ref['p99']:.2f}, "
        f"server CPU per transition {svc['cpu'] / ref['cpu']:.2f}x the bare's, "
        f"PostgreSQL backends' {svc['pg'] / ref['pg']:.2f}x"
    )
    for name in sorted(p.name for p in logs.iterdir()):
        text = (logs / name).read_text(errors="replace")
        if "Traceback" in text:
            print(f"{name} logged errors:\n{text[-4000:]}")
    failures = [
        f"{side}: {what}"
        for side, r in (("service", svc), ("bare", ref))
        for what in (["no request completed"] if not r["requests"] else [])
        + ([f"{r['non2xx']} non-2xx responses"] if r["non2xx"] else [])
    ]
    if args.goal is not None and not ratio >= args.goal:
        failures.append(f"ratio {ratio:.2f} below the goal {args.goal:g}")
    if failures:
        print("failed: " + "; ".join(failures))
    print(
        f"create+accept over HTTP on PostgreSQL: service {svc['tps']:.0f}/s vs bare {ref['tps']:.0f}/s, "
        f"ratio {ratio:.2f} (p99 {svc['p99']:.1f} ms vs {ref['p99']:.1f} ms)"
    )
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12, help="wrk's duration of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of service then bare, each started afresh")
    parser.add_argument("--threads", type=int, default=8, help="wrk threads (one merchant and creator each)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (shared by the threads)")
    parser.add_argument("--goal", type=float, help="exit 1 when the ratio service/bare is below it")
    parser.add_argument("--db", help="the service's database (the reference's is DB_bare); created and dropped")
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="record a py-spy profile of the service during the first "
        "round: a flame graph, or collapsed stacks if OUT ends in .txt (needs py-spy in the venv)",
    )
    args = parser.parse_args()
    if args.db == "test":
        parser.error("refusing to use the database `test`")
    if args.connections < args.threads or min(args.seconds, args.rounds, args.threads) < 1:
        parser.error("needs seconds, rounds, threads ≥ 1 and connections ≥ threads")
    if not shutil.which("wrk"):
        parser.error("wrk not found: apt-get install wrk (`make bench` installs it)")
    if args.py_spy and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--py-spy needs py-spy in the venv (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="lc-bench-") as logs:
        return asyncio.run(bench(args, Path(logs)))


if __name__ == "__main__":
    sys.exit(main())
