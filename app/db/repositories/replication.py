"""What the replica check asks each server (app/db/replica.py): the primary's WAL position, and
whether the replica is in recovery, has replayed up to that position, and when it replayed its
last transaction."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_PRIMARY_POSITION = text("SELECT CAST(pg_current_wal_lsn() AS text)")
_REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= CAST(CAST(:primary_lsn AS text) AS pg_lsn), "
    "pg_last_xact_replay_timestamp(), clock_timestamp()"
)


class ReplicaState(NamedTuple):
    in_recovery: bool
    caught_up: bool  # replayed at least up to the primary position it was compared with
    replayed_at: datetime | None  # commit time of the last transaction replayed (None: none yet)
    now: datetime  # the replica's clock


async def primary_position(connection: AsyncConnection) -> str:
    return (await connection.execute(_PRIMARY_POSITION)).scalar_one()


async def replica_state(connection: AsyncConnection, primary_lsn: str) -> ReplicaState:
    row = (await connection.execute(_REPLICA_STATE, {"primary_lsn": primary_lsn})).one()
    return ReplicaState(bool(row[0]), bool(row[1]), row[2], row[3])
