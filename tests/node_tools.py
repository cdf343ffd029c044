"""The npm tools of docs/examples (pinned in its package-lock.json) for the client tests: installed
with `npm ci` when missing or older than the lock, as `make clients` does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
NODE_MODULES = EXAMPLES / "node_modules"


def tools() -> Path:
    """docs/examples/node_modules with the pinned tools; skips the test without npx/npm."""
    if shutil.which("npx") is None or shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npx (Node.js and npm) is not installed: the TypeScript client and the Redocly lint need it")
    stamp = NODE_MODULES / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < (EXAMPLES / "package-lock.json").stat().st_mtime:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLES, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return NODE_MODULES


def run(args: list[str], cwd: Path, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
