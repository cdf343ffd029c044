"""The TypeScript client client teams start from (spec/client-contract.md, "A client teams can
start from"): types generated with openapi-typescript from the service's schema, used through
openapi-fetch. docs/examples/task_order.ts type-checks with `tsc --strict` and runs a whole
task order against a live service (uvicorn on a free loopback port, a temporary SQLite file
with the demo accounts); a program that misspells a state does not compile."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import IS_POSTGRES
from tests.node_tools import EXAMPLES, run, tools

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="the schema is the same on every database: SQLite pass only")
ROOT = EXAMPLES.parent.parent
TSC_FLAGS = ["--strict", "--noUnusedLocals", "--noFallthroughCasesInSwitch"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, application) -> Path:
    """A copy of the repository's layout: clients/ts/schema.d.ts generated from the app's schema,
    docs/examples/ with the example, its tsconfig and the pinned node_modules."""
    node_modules = tools()
    base = tmp_path_factory.mktemp("ts-client")
    (base / "clients" / "ts").mkdir(parents=True)
    (base / "clients" / "openapi.json").write_text(json.dumps(application.openapi(), ensure_ascii=False))
    examples = base / "docs" / "examples"
    examples.mkdir(parents=True)
    for name in ("task_order.ts", "tsconfig.json", "package.json"):
        shutil.copy(EXAMPLES / name, examples / name)
    (examples / "node_modules").symlink_to(node_modules)
    generated = run(
        [
            str(node_modules / ".bin" / "openapi-typescript"),
            str(base / "clients" / "openapi.json"),
            "--default-non-nullable",
            "false",
            "-o",
            str(base / "clients" / "ts" / "schema.d.ts"),
        ],
        cwd=examples,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    return examples


def _tsc(project: Path, *extra: str) -> subprocess.CompletedProcess:
    return run([str(project / "node_modules" / ".bin" / "tsc"), "-p", str(project), *TSC_FLAGS, *extra], cwd=project)


def test_the_example_type_checks_strictly(workspace):
    schema = (workspace.parent.parent / "clients" / "ts" / "schema.d.ts").read_text()
    assert 'TaskOrderState: "pending_acceptance" | "waiting_live"' in schema
    assert '"If-Match"?: string' in schema and '"Idempotency-Key"?: string' in schema
    result = _tsc(workspace, "--noEmit")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_misspelt_state_does_not_compile(workspace):
    """`case "compleetd":` in a switch over the typed state is a compile error; the same program
    spelt right compiles (so the failure is the misspelling, nothing else)."""
    program = """import type {{ components }} from "../../clients/ts/schema.js";
type TaskOrder = components["schemas"]["TaskOrderOut"];
export function done(order: TaskOrder): boolean {{
  switch (order.state) {{
    case "{state}":
      return true;
    default:
      return false;
  }}
}}
"""
    project = workspace.parent / "misspelt"
    project.mkdir(exist_ok=True)
    (project / "node_modules").symlink_to(workspace / "node_modules")
    (project / "tsconfig.json").write_text((workspace / "tsconfig.json").read_text())
    (project / "bad.ts").write_text(program.format(state="compleetd"))
    (project / "good.ts").write_text(program.format(state="completed"))
    result = _tsc(project, "--noEmit")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "bad.ts" in output and "compleetd" in output and "TS2678" in output, output
    assert "good.ts" not in output, output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_service(tmp_path):
    """`python -m app migrate`, `seed-demo`, then `serve` on a free loopback port, on a temporary
    SQLite file; stopped (by its own process id) afterwards."""
    env = {**os.environ, "LC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/live.db"}
    env.pop("LC_TEST_DATABASE_URL", None)
    for command in (["migrate"], ["seed-demo"]):
        done = subprocess.run(
            [sys.executable, "-m", "app", *command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate-first"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_the_example_runs_a_whole_task_order_against_a_live_service(workspace, live_service):
    built = _tsc(workspace)
    assert built.returncode == 0, built.stdout + built.stderr
    result = run(
        ["node", str(workspace / "dist" / "task_order.js")],
        cwd=workspace,
        timeout=120,
        env={**os.environ, "LC_BASE_URL": live_service},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for step in ("created:", "accepted:", "live:", "ended:", "approved:", "wallets:", "history:"):
        assert step in output, output
    assert "completed, creator received" in output, output
    assert "pending_review→completed" in output, output
