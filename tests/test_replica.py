"""Heavy reads on a real streaming replica (scale.md "Reads on replicas").

A throw-away primary and its replica (bench/replica_cluster.py: initdb, pg_basebackup -R, each
on its own loopback port). The service runs on the primary with LC_DATABASE_REPLICA_URL; with
the replica's replay paused, what the answer shows tells where it was read: the replica (old
data, `X-Data-As-Of` in the past) while within LC_REPLICA_MAX_LAG_SECONDS, the primary once
it lags more, or when it is down. Reads a client makes right after writing stay on the
primary. Runs in every pass of the suite (it brings its own PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from app.core.config import Settings
from app.db import migrate
from app.domain.accounts import AccountCreate, Role, create_account, start_session
from app.main import create_app
from bench import replica_cluster

_WHY_NOT = replica_cluster.available()
if _WHY_NOT is not None and os.environ.get("LC_REQUIRE_POSTGRES") == "1":  # CI (.ci/run): never skipped there
    raise RuntimeError(f"a streaming replica is required (LC_REQUIRE_POSTGRES=1) but cannot be made: {_WHY_NOT}")
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"no throw-away streaming replica here: {_WHY_NOT}")


@pytest.fixture(scope="module")
def cluster() -> Any:
    with replica_cluster.ReplicaCluster() as made:
        migrate.upgrade(made.primary_url)
        made.wait_caught_up()
        yield made


@pytest.fixture
async def service(cluster) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = Settings(
        env="test",
        database_url=cluster.primary_url,
        database_replica_url=cluster.replica_url,
        replica_max_lag_seconds=30,
        run_sweeper=False,
        db_pool_size=4,
        db_pool_warm=0,
        argon2_time_cost=1,
        argon2_memory_cost_kib=1024,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app


async def _merchant(app: Any, client: httpx.AsyncClient, name: str) -> dict[str, str]:
    async with app.state.sessionmaker() as session:
        operator = await create_account(
            session, AccountCreate(role=Role.operator, username=f"op-{name}", password="operator-pass", display_name="Ops")
        )
        token = (await start_session(session, operator.id, "operator")).access_token
        await session.commit()
    op = {"Authorization": f"Bearer {token}"}
    r = await client.post(
        "/v1/accounts",
        headers=op,
        json={
            "role": "merchant",
            "username": name,
            "password": "password-123",
            "display_name": name,
            "profile": {"shop_name": f"Shop {name}"},
        },
    )
    assert r.status_code == 201, r.text
    async with app.state.sessionmaker() as session:  # a token needs a session
        token = (await start_session(session, r.json()["id"], "merchant")).access_token
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


async def _top_up(client: httpx.AsyncClient, headers: dict[str, str], amount: int) -> None:
    r = await client.post("/v1/wallet/top-ups", headers=headers, json={"amount_fen": amount, "method": "bank_transfer"})
    assert r.status_code == 201, r.text


async def _export(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, datetime]:
    """How many top-ups the export shows, and its X-Data-As-Of."""
    r = await client.get("/v1/wallet/top-ups/export", headers=headers, params={"format": "csv"})
    assert r.status_code == 200, r.text
    as_of = r.headers["x-data-as-of"]
    assert as_of.endswith("Z")
    return len(r.content.decode("utf-8-sig").strip().splitlines()) - 1, datetime.fromisoformat(as_of)


def _reads() -> dict[str, float]:
    """`livecollab_replica_reads_total` of this process, by source."""
    return {
        source: REGISTRY.get_sample_value("livecollab_replica_reads_total", {"source": source}) or 0.0
        for source in ("replica", "primary")
    }


async def test_heavy_reads_follow_the_replica_and_fall_back_to_the_primary(cluster, service):
    client, app = service
    replica = app.state.replica
    merchant = await _merchant(app, client, "replica-m1")
    await _top_up(client, merchant, 101)
    await asyncio.to_thread(cluster.wait_caught_up)
    replica.forget()
    before = _reads()
    count, as_of = await _export(client, merchant)
    assert count == 1  # read on the replica, caught up
    assert _reads() == {"replica": before["replica"] + 1, "primary": before["primary"]}  # /metrics says where

    # Replay paused: the primary moves on, the replica does not.
    cluster.psql(cluster.replica_port, "SELECT pg_wal_replay_pause()")
    try:
        await _top_up(client, merchant, 202)
        # The list a client reads right after writing is on the primary: it shows both.
        listed = (await client.get("/v1/wallet/top-ups", headers=merchant)).json()
        assert len(listed["items"]) == 2
        assert "x-data-as-of" not in (await client.get("/v1/wallet/top-ups", headers=merchant)).headers

        replica.forget()
        count, as_of = await _export(client, merchant)
        assert count == 1, "within LC_REPLICA_MAX_LAG_SECONDS the export reads the replica (replay paused: one top-up)"
        assert as_of < datetime.now(UTC)

        # More behind than allowed: the same read goes to the primary, as of now.
        replica.max_lag_seconds = 0.2
        await asyncio.sleep(0.5)
        replica.forget()
        before = datetime.now(UTC) - timedelta(seconds=1)
        reads = _reads()
        count, as_of = await _export(client, merchant)
        assert count == 2 and as_of >= before
        assert _reads() == {"replica": reads["replica"], "primary": reads["primary"] + 1}
    finally:
        cluster.psql(cluster.replica_port, "SELECT pg_wal_replay_resume()")

    replica.max_lag_seconds = 30
    await asyncio.to_thread(cluster.wait_caught_up)
    replica.forget()
    count, _ = await _export(client, merchant)
    assert count == 2  # caught up again: the replica shows both

    # The replica going down after its check: the read still answers, from the primary.
    replica.check_interval = 3600.0
    replica.forget()
    assert (await _export(client, merchant))[0] == 2
    assert (await replica.freshness()).on_replica
    await asyncio.to_thread(cluster.stop_replica)
    try:
        count, as_of = await _export(client, merchant)
        assert count == 2 and as_of >= datetime.now(UTC) - timedelta(seconds=5)
        # and checked while down: the primary, until it is back
        replica.check_interval = 1.0
        replica.forget()
        assert (await _export(client, merchant))[0] == 2
        assert not (await replica.freshness()).on_replica
    finally:
        await asyncio.to_thread(cluster.start_replica)
    await asyncio.to_thread(cluster.wait_caught_up)
    replica.forget()
    assert (await replica.freshness()).on_replica


async def test_every_heavy_read_of_the_spec_says_how_fresh_it_is(cluster, service):
    """The operations scale.md lists are the replica's (and only those are): each answers
    X-Data-As-Of; an entity read is not marked."""
    client, app = service
    marked = {
        route.path
        for route in app.routes
        if getattr(getattr(route, "endpoint", None), "replica_read", False) and "GET" in getattr(route, "methods", ())
    }
    assert marked == {
        "/v1/campaigns/{campaign_id}/stock-plan",
        "/v1/campaigns/{campaign_id}/stock-plan/export",
        "/v1/live-bases/{base_id}/stats",
        "/v1/incentive-statements",
        "/v1/incentive-statements/export",
        "/v1/wallet/top-ups/export",
    }
    merchant = await _merchant(app, client, "replica-m2")
    r = await client.get("/v1/wallet/top-ups/export", headers=merchant)
    assert r.status_code == 200 and r.headers["x-data-as-of"].endswith("Z")
    assert "x-data-as-of" not in (await client.get("/v1/wallet", headers=merchant)).headers


async def test_the_schema_declares_x_data_as_of_on_the_heavy_reads(client):
    doc = (await client.get("/openapi.json")).json()
    export = doc["paths"]["/v1/wallet/top-ups/export"]["get"]["responses"]["200"]["headers"]
    assert export["X-Data-As-Of"] == {"$ref": "#/components/headers/XDataAsOf"}
    assert "X-Data-As-Of" not in doc["paths"]["/v1/wallet"]["get"]["responses"]["200"]["headers"]
    assert doc["components"]["headers"]["XDataAsOf"]["schema"]["format"] == "date-time"
