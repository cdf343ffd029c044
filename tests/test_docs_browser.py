"""/docs and /redoc render the operations in headless Chromium with no internet: every asset
comes from the service itself (Debian's `chromium`; `make test` installs it when it can)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import IS_POSTGRES

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
    pytest.mark.skipif(IS_POSTGRES, reason="the pages are the same on every database: SQLite pass only"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path_factory.mktemp("docs") / "docs.db"
    env = {**os.environ, "LC_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "LC_ENV": "dev", "LC_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def render(url: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_swagger_ui_renders_operations(server, tmp_path):
    dom = render(f"{server}/docs", tmp_path)
    assert dom.count('class="opblock ') > 20 or dom.count("opblock-summary") > 20, dom[:2000]
    assert "/v1/auth/token" in dom and "Authorize" in dom


def test_redoc_renders_operations(server, tmp_path):
    dom = render(f"{server}/redoc", tmp_path)
    assert "Live Collab" in dom and "/v1/products" in dom, dom[:2000]
