"""`make bench-modules` (bench/modules.py with the bare reference bench/bare_modules.py) in
miniature on PostgreSQL: the whole runner with one-second phases must finish with exit 0 and print
a service/bare ratio for every module. Skipped on SQLite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import bare_modules, modules
from tests.conftest import TEST_DATABASE_URL, postgres_only

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_has_a_load_phase_and_a_bare_endpoint() -> None:
    assert set(modules.CALLS) == set(modules.MODULES)
    for name in ("create_signup", "create_check_in", "view_contact", "request_redemption"):
        assert getattr(bare_modules, name).__doc__  # each reference documents its transaction


@postgres_only
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
        assert re.search(rf"^ratio service/bare {module}: \d+\.\d\d$", result.stdout, re.M), result.stdout
