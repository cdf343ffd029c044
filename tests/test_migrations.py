"""`alembic upgrade head` on an empty database gives exactly the models' schema."""

from __future__ import annotations

import asyncio
import os
import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from app.db.base import Base
from app.db.migrate import upgrade
from app.db.session import make_engine
from tests.conftest import _TMP, IS_POSTGRES, TEST_DATABASE_URL


def _diff(sync_conn):
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def _fresh_database() -> tuple[str, str | None]:
    if not IS_POSTGRES:
        return f"sqlite+aiosqlite:///{_TMP}/migrate-{uuid.uuid4().hex}.db", None
    name = f"lc_migrate_{uuid.uuid4().hex[:8]}"
    admin = make_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return TEST_DATABASE_URL.rsplit("/", 1)[0] + "/" + name, name


async def _drop_database(name: str) -> None:
    admin = make_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def test_migrations_match_models():
    url, name = await _fresh_database()
    try:
        await asyncio.to_thread(upgrade, url)
        engine = make_engine(url)
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        await engine.dispose()
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        if name:
            await _drop_database(name)
        elif os.path.exists(url.split("///", 1)[1]):
            os.remove(url.split("///", 1)[1])


async def test_replicas_migrating_an_empty_database_at_once_all_succeed():
    """Every API replica migrates at start (deploy/docker-compose.scale.yml): three at once on an
    empty database end with status 0 and the schema at head (PostgreSQL: an advisory lock orders
    them; before it, two of three died on a unique violation creating `alembic_version`)."""
    import subprocess
    import sys
    from pathlib import Path

    url, name = await _fresh_database()
    root = Path(__file__).resolve().parents[1]
    try:
        env = {**os.environ, "LC_DATABASE_URL": url, "LC_LOG_LEVEL": "WARNING"}
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app", "migrate", cwd=root, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
            )
            for _ in range(3)
        ]
        results = [(await p.wait(), (await p.stderr.read()).decode()[-500:]) for p in processes]  # type: ignore[union-attr]
        assert [code for code, _ in results] == [0, 0, 0], results
        engine = make_engine(url)
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            diff = await conn.run_sync(_diff)
        await engine.dispose()
        assert len(versions) == 1 and diff == []
    finally:
        if name:
            await _drop_database(name)
        elif os.path.exists(url.split("///", 1)[1]):
            os.remove(url.split("///", 1)[1])
