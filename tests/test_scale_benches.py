"""The scale benchmarks (`bench/campaign_stock.py`, `bench/incentives_scale.py`) at a tiny scale,
so they cannot rot: data generation, the measured calls and their independent SQL checks run
end to end on PostgreSQL, in their own databases (created and dropped by the scripts). Both
scripts start at once (each spends most of its time migrating its database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IS_POSTGRES, TEST_DATABASE_URL, postgres_only

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "campaigns": ["campaign_stock.py", "--signups", "40", "--repeat", "1", "--db", "lc_scale_campaigns_t"],
    "incentives": ["incentives_scale.py", "--scale", "0.0005", "--db", "lc_scale_incentives_t"],
}


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    if not IS_POSTGRES:
        pytest.skip("needs PostgreSQL (LC_TEST_DATABASE_URL)")
    server = TEST_DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://", 1).rsplit("/", 1)[0]
    env = dict(os.environ, BENCH_PG=server)
    procs = {
        name: subprocess.Popen(
            [sys.executable, f"bench/{script}", *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, (script, *args) in RUNS.items()
    }
    out = {}
    for name, proc in procs.items():
        try:
            out[name] = proc.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out[name] = proc.communicate()[0] + "\n(timed out)"
    for name, proc in procs.items():
        assert proc.returncode == 0, out[name]
        assert "PROBLEM" not in out[name], out[name]
    return out


@postgres_only
def test_campaign_stock_bench_runs(outputs):
    out = outputs["campaigns"]
    assert "data: 40 signups" in out, out
    for name in ("stock-plan", "export csv", "export xlsx"):
        assert f"brand shop {name}" in out, out


@postgres_only
def test_incentives_scale_bench_runs(outputs):
    out = outputs["incentives"]
    assert "5000 orders in" in out, out
    assert "spot check" in out and ": ok" in out, out
    assert "one month's compute:" in out, out
