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


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1, Debian's package): either checks a file
    without a Docker engine."""
    import shutil

    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _compose_config(path: Path) -> subprocess.CompletedProcess:
    command = _compose_command()
    if command is None:
        import pytest

        pytest.skip("neither `docker compose` nor `docker-compose` is installed (make test installs docker-compose as root)")
    env = {**os.environ, "LC_SECRET_KEY": "s" * 40, "LC_BOOTSTRAP_OPERATOR_PASSWORD": "a-long-password"}
    return subprocess.run([*command, "-f", str(path), "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_compose_files_are_valid():
    for path in (ROOT / "docker-compose.yml", ROOT / "deploy" / "docker-compose.scale.yml"):
        result = _compose_config(path)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_scaled_deployment_has_replicas_a_streaming_replica_and_nats():
    """docs/scaling.md's deployment: N API replicas behind nginx, each on the primary with the
    replica for heavy reads and NATS for events; the replica copies the primary."""
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.scale.yml").read_text())
    services = compose["services"]
    assert {"db", "db-replica", "nats", "api", "lb"} <= set(services)
    api = services["api"]
    assert str(api["deploy"]["replicas"]) == "${LC_API_REPLICAS:-3}"
    env = api["environment"]
    assert "@db:5432/" in env["LC_DATABASE_URL"] and "@db-replica:5432/" in env["LC_DATABASE_REPLICA_URL"]
    assert env["LC_EVENT_BROKER_URL"] == "nats://nats:4222" and env["LC_ENV"] == "production"
    assert "ports" not in api and "8000:8000" in services["lb"]["ports"]
    replica_start = "\n".join(services["db-replica"]["entrypoint"])
    assert "pg_basebackup -h db" in replica_start and " -R " in replica_start
    assert "wal_level=replica" in services["db"]["command"]
    assert "-js" in services["nats"]["command"]
    init = ROOT / "deploy" / "postgres" / "init-replication.sh"
    assert "host replication" in init.read_text() and os.access(init, os.X_OK)
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api:8000" in nginx and "proxy_buffering off" in nginx
