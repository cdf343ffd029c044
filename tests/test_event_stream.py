"""`GET /v1/events/stream` (client-contract.md, "Events without gaps") against two real replicas
of the service on one database (loopback only): Server-Sent Events as they commit, resumption
after `Last-Event-ID` with nothing lost or repeated, keep-alive comments, single-use tickets for
`EventSource`. httpx's in-process transport buffers whole answers, so these run real servers."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import IS_POSTGRES, TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parents[1]
OPERATOR, OPERATOR_PASSWORD = "streamop", "stream-operator-pass-1"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _admin_url() -> str:
    url = make_url(TEST_DATABASE_URL)
    return url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Any:
    """Two service processes on one fresh database. (Top-ups by bank transfer stay pending:
    one event each, `top_up.created`.)"""
    database = None
    if IS_POSTGRES:
        import asyncpg

        database = f"lc_stream_{uuid.uuid4().hex[:8]}"

        async def create() -> None:
            conn = await asyncpg.connect(_admin_url())
            await conn.execute(f'CREATE DATABASE "{database}"')
            await conn.close()

        asyncio.run(create())
        url = make_url(TEST_DATABASE_URL).set(database=database).render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('stream') / 'stream.db'}"
    env = {
        **os.environ,
        "LC_DATABASE_URL": url,
        "LC_ENV": "dev",
        "LC_SECRET_KEY": secrets.token_hex(32),
        "LC_LOG_LEVEL": "WARNING",
        "LC_RUN_SWEEPER": "false",
        "LC_ARGON2_TIME_COST": "1",
        "LC_ARGON2_MEMORY_COST_KIB": "8192",
        "LC_DB_POOL_SIZE": "5",
        "LC_DB_POOL_WARM": "0",
        "LC_BOOTSTRAP_OPERATOR_USERNAME": OPERATOR,
        "LC_BOOTSTRAP_OPERATOR_PASSWORD": OPERATOR_PASSWORD,
        "LC_EVENT_STREAM_POLL_SECONDS": "0.1",
        "LC_EVENT_STREAM_KEEPALIVE_SECONDS": "1",
    }
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    procs, urls = [], []
    for _ in range(2):
        port = _port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(port), "--no-migrate-first"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url_ in urls:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url_}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{url_} did not start"
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
        if database:
            import asyncpg

            async def drop() -> None:
                conn = await asyncpg.connect(_admin_url())
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await conn.close()

            asyncio.run(drop())


async def _token(client: httpx.AsyncClient, username: str, password: str) -> str:
    r = await client.post("/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def _merchant(client: httpx.AsyncClient) -> dict[str, str]:
    op = {"Authorization": f"Bearer {await _token(client, OPERATOR, OPERATOR_PASSWORD)}"}
    username, password = f"m_{uuid.uuid4().hex[:8]}", "merchant-pass-" + uuid.uuid4().hex[:8]
    body = {
        "role": "merchant",
        "username": username,
        "password": password,
        "display_name": "Stream shop",
        "profile": {"shop_name": "Stream shop"},
    }
    r = await client.post("/v1/accounts", headers=op, json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {await _token(client, username, password)}"}


async def _top_up(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post(
        "/v1/wallet/top-ups", headers=headers, json={"amount_fen": 100, "method": "bank_transfer", "reference": "stream"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def _frames(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The stream's frames: events as {id, event, data}, comments as {comment}."""
    frame: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")


async def _next_events(frames: AsyncIterator[dict[str, str]], count: int, timeout: float = 10) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []

    async def collect() -> None:
        async for frame in frames:
            if "event" in frame:
                got.append(frame)
                if len(got) == count:
                    return

    await asyncio.wait_for(collect(), timeout)
    return got


async def test_stream_carries_events_as_they_commit_and_resumes_without_loss(replicas):
    a, b = replicas
    async with httpx.AsyncClient(base_url=a, timeout=20) as on_a, httpx.AsyncClient(base_url=b, timeout=20) as on_b:
        merchant = await _merchant(on_a)
        first = await _top_up(on_a, merchant)  # before the stream: not sent (it starts from now on)
        async with on_b.stream("GET", "/v1/events/stream", headers=merchant) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            frames = _frames(response)
            opened = await anext(frames)
            assert "comment" in opened or "retry" in opened
            second = await _top_up(on_a, merchant)  # written on the other replica
            (event,) = await _next_events(frames, 1)
            assert event["event"] == "top_up.created"
            data = json.loads(event["data"])
            assert data["id"] == event["id"] and data["type"] == "top_up.created"
            assert data["data"]["id"] == second and first not in event["data"]
            # silence: a comment line keeps it open (LC_EVENT_STREAM_KEEPALIVE_SECONDS=1 here)
            comment = await asyncio.wait_for(anext(frames), 5)
            assert "comment" in comment
            last_seen = event["id"]
        # while nobody listens, two more; resuming after the last one seen gives exactly those
        third, fourth = await _top_up(on_a, merchant), await _top_up(on_b, merchant)
        async with on_b.stream("GET", "/v1/events/stream", headers={**merchant, "Last-Event-ID": last_seen}) as response:
            events = await _next_events(_frames(response), 2)
        assert [json.loads(e["data"])["data"]["id"] for e in events] == [third, fourth]
        # ?after= does the same for clients that cannot set the header
        async with on_a.stream("GET", "/v1/events/stream", headers=merchant, params={"after": events[0]["id"]}) as response:
            (only,) = await _next_events(_frames(response), 1)
        assert only["id"] == events[1]["id"]


async def test_stream_tickets_open_one_stream_once(replicas):
    a, b = replicas
    async with httpx.AsyncClient(base_url=a, timeout=20) as on_a, httpx.AsyncClient(base_url=b, timeout=20) as on_b:
        merchant = await _merchant(on_a)
        r = await on_a.post("/v1/events/stream-tickets", headers=merchant)
        assert r.status_code == 200, r.text
        ticket = r.json()
        assert ticket["expires_in"] == 60 and len(ticket["ticket"]) >= 32
        async with on_b.stream("GET", "/v1/events/stream", params={"ticket": ticket["ticket"]}) as response:
            assert response.status_code == 200  # honoured by the other replica
            frames = _frames(response)
            await anext(frames)
            created = await _top_up(on_a, merchant)
            (event,) = await _next_events(frames, 1)
            assert json.loads(event["data"])["data"]["id"] == created
        again = await on_b.get("/v1/events/stream", params={"ticket": ticket["ticket"]})
        assert again.status_code == 401 and again.headers["content-type"] == "application/problem+json"
        assert (await on_a.get("/v1/events/stream", params={"ticket": "forged"})).status_code == 401
        assert (await on_a.get("/v1/events/stream")).status_code == 401
        assert (await on_a.post("/v1/events/stream-tickets")).status_code == 401


async def test_stream_bad_input_is_4xx(replicas):
    a, _ = replicas
    async with httpx.AsyncClient(base_url=a, timeout=20) as client:
        merchant = await _merchant(client)
        r = await client.get("/v1/events/stream", headers={**merchant, "Last-Event-ID": "evt_" + "0" * 26})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]
        r = await client.get("/v1/events/stream", headers=merchant, params={"after": "garbage"})
        assert r.status_code == 422
        r = await client.get("/v1/events/stream", headers=merchant, params={"since": "x"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "since"]


async def test_a_session_ended_on_one_replica_is_refused_on_the_other_within_a_second(replicas):
    """security.md: logout on A; B, which has just served the token, refuses it within one
    second, and B's open event stream of that token closes."""
    a, b = replicas
    async with httpx.AsyncClient(base_url=a, timeout=20) as on_a, httpx.AsyncClient(base_url=b, timeout=20) as on_b:
        merchant = await _merchant(on_a)
        assert (await on_b.get("/v1/accounts/me", headers=merchant)).status_code == 200  # B has read it live
        async with on_b.stream("GET", "/v1/events/stream", headers=merchant) as response:
            assert response.status_code == 200
            frames = _frames(response)
            await anext(frames)
            assert (await on_a.post("/v1/auth/logout", headers=merchant)).status_code == 204
            ended = time.monotonic()
            while True:
                sent = time.monotonic()
                if (await on_b.get("/v1/accounts/me", headers=merchant)).status_code != 200:
                    break
                assert sent - ended < 1.0, "B still served the ended session after a second"
                await asyncio.sleep(0.05)

            async def until_closed() -> list[dict[str, str]]:
                return [frame async for frame in frames]

            rest = await asyncio.wait_for(until_closed(), 5)
            assert {"comment": "session ended"} in rest
        refused = await on_b.get("/v1/accounts/me", headers=merchant)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"


async def test_a_ticket_and_the_stream_it_opened_end_with_their_login_session(replicas):
    """A ticket is its login session's: after a logout on A, a ticket issued before it is 401 on
    B, and a stream a ticket opened on B closes within the liveness check's second."""
    a, b = replicas
    async with httpx.AsyncClient(base_url=a, timeout=20) as on_a, httpx.AsyncClient(base_url=b, timeout=20) as on_b:
        merchant = await _merchant(on_a)
        first = (await on_a.post("/v1/events/stream-tickets", headers=merchant)).json()["ticket"]
        second = (await on_a.post("/v1/events/stream-tickets", headers=merchant)).json()["ticket"]
        async with on_b.stream("GET", "/v1/events/stream", params={"ticket": first}) as response:
            assert response.status_code == 200
            frames = _frames(response)
            await anext(frames)
            assert (await on_a.post("/v1/auth/logout", headers=merchant)).status_code == 204

            async def until_closed() -> list[dict[str, str]]:
                return [frame async for frame in frames]

            rest = await asyncio.wait_for(until_closed(), 5)
            assert {"comment": "session ended"} in rest
        refused = await on_b.get("/v1/events/stream", params={"ticket": second})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"
        again = await on_b.get("/v1/events/stream", params={"ticket": second})
        assert again.status_code == 401  # used up by the refused attempt, too
