"""`make bench-modules` (bench/modules.py with the bare reference bench/bare_modules.py, driven by
wrk with bench/modules.lua) in miniature on PostgreSQL: the whole runner with one-second phases
must finish with exit 0 (every request of every phase answered 2xx) and print a service/bare
ratio for every module. Skipped on SQLite and where wrk is not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench import bare_modules, modules
from tests.conftest import TEST_DATABASE_URL, postgres_only

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_has_a_load_phase_and_a_bare_endpoint() -> None:
    assert set(modules.CALLS) == set(modules.MODULES)
    for name in ("create_signup", "create_check_in", "view_contact", "request_redemption"):
        assert getattr(bare_modules, name).__doc__  # each reference documents its transaction


def test_the_wrk_script_reads_what_the_runner_writes(tmp_path) -> None:
    """Every request line: thread number, path, token, JSON body, start time (modules.lua's fields)."""
    rows = [("/v1/x", "tok", {"planned_live_at": "@AT@"}, 1700000000), ("/y", "", {"a": 1}, 0), ("/z", "", {}, 0)]
    lines = modules.write_rows(tmp_path / "rows.tsv", rows, 2).read_text().splitlines()
    assert [line.split("\t") for line in lines] == [
        ["1", "/v1/x", "tok", '{"planned_live_at": "@AT@"}', "1700000000"],
        ["2", "/y", "", '{"a": 1}', "0"],
        ["1", "/z", "", "{}", "0"],
    ]
    assert modules.SCRIPT.exists()


@postgres_only
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_tiny_run_prints_a_ratio_per_module() -> None:
    url = make_url(TEST_DATABASE_URL)
    auth = f"{url.username or ''}{':' + url.password if url.password else ''}@" if url.username else ""
    server = f"postgresql://{auth}{url.host or '127.0.0.1'}:{url.port or 5432}"
    result = subprocess.run(
        [
            sys.executable,
            "bench/modules.py",
            "--seconds",
            "1",
            "--concurrency",
            "2",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--db",
            "lc_bench_modules_t",
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_PG": server},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for module in modules.MODULES:
        assert re.search(rf"^ratio service/bare {module}: \d+\.\d\d ", result.stdout, re.M), result.stdout
        assert re.search(rf"^{module} .* \d+\.\d\d +\d+\.\d\d +\d+\.\d\d$", result.stdout, re.M), result.stdout
