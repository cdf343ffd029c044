"""What can be checked of the deployment without a Docker engine: the compose file's shape, the
Dockerfile's instructions, and the CLI commands a container and an operator run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_runs_service_with_postgres():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "db"}
    api, db = services["api"], services["db"]
    assert api["build"] == "."
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert "healthcheck" in db and db["image"].startswith("postgres:")
    env = api["environment"]
    assert env["LC_DATABASE_URL"].startswith("postgresql+asyncpg://")
    user = db["environment"]["POSTGRES_USER"]
    assert (
        f"://{user}:{db['environment']['POSTGRES_PASSWORD']}@db:5432/{db['environment']['POSTGRES_DB']}" in env["LC_DATABASE_URL"]
    )
    assert "8000:8000" in api["ports"]


def test_dockerfile_instructions():
    known = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK", "CMD", "ARG"}
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM python:3.11")
    for line in lines:
        assert line.split()[0] in known, line
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY source {source} missing"
    cmd = next(ln for ln in lines if ln.startswith("CMD"))
    assert "python -m app migrate" in cmd and "uvicorn app.main:app" in cmd


def _cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LC_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "LC_ENV": "dev"}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_migrate_seed_sweep_create_operator(tmp_path):
    db = tmp_path / "cli.db"
    assert _cli("migrate", db=db).returncode == 0
    seeded = _cli("seed-demo", db=db)
    assert seeded.returncode == 0, seeded.stderr
    assert "demo-pass-123" in seeded.stdout and "merchant" in seeded.stdout
    again = _cli("seed-demo", db=db)  # idempotent
    assert again.returncode == 0, again.stderr
    swept = _cli("sweep", db=db)
    assert swept.returncode == 0 and "fired" in swept.stdout
    made = _cli("create-operator", "ops2", "--password", "a-strong-password", db=db)
    assert made.returncode == 0 and "operator created" in made.stdout
    assert "exists" in _cli("create-operator", "ops2", "--password", "a-strong-password", db=db).stdout


def test_cli_compute_incentives_reports_domain_errors(tmp_path):
    db = tmp_path / "cli.db"
    assert _cli("migrate", db=db).returncode == 0
    result = _cli("compute-incentives", "prg_missing", "2026-01", db=db)
    assert result.returncode == 1
    assert "error (" in result.stderr
