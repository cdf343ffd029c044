"""The reference: bare asyncpg endpoints doing the same transactions as the service's
create (with its freeze) and accept, with no ORM, validation, auth or events — FastAPI routes
around raw asyncpg, as in the judged tool's floor.

    create: lock the merchant's wallet row, move available → frozen, insert the order,
            insert two ledger lines
    accept: lock the order row, update its state, insert a history row
"""

from __future__ import annotations

import contextlib
import os
import uuid

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DSN = os.environ["BENCH_DSN"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_wallets (id text PRIMARY KEY, available_fen bigint NOT NULL, frozen_fen bigint NOT NULL);
CREATE TABLE IF NOT EXISTS bare_orders (id text PRIMARY KEY, merchant_id text NOT NULL, creator_id text NOT NULL,
    amount_fen bigint NOT NULL, state text NOT NULL, version int NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS bare_ledger (id text PRIMARY KEY, txn_id text NOT NULL, account text NOT NULL,
    amount_fen bigint NOT NULL);
CREATE TABLE IF NOT EXISTS bare_history (id text PRIMARY KEY, order_id text NOT NULL, from_state text,
    to_state text NOT NULL, actor text NOT NULL, at timestamptz NOT NULL DEFAULT now());
"""
pool: asyncpg.Pool | None = None


async def create(data: dict) -> tuple[int, dict]:
    async with pool.acquire() as conn, conn.transaction():
        wallet = await conn.fetchrow("SELECT available_fen FROM bare_wallets WHERE id = $1 FOR UPDATE", data["merchant_id"])
        amount = int(data["amount_fen"])
        if wallet is None or wallet["available_fen"] < amount:
            return 409, {"code": "insufficient_balance"}
        await conn.execute(
            "UPDATE bare_wallets SET available_fen = available_fen - $2, frozen_fen = frozen_fen + $2 WHERE id = $1",
            data["merchant_id"],
            amount,
        )
        order_id = uuid.uuid4().hex
        await conn.execute(
            "INSERT INTO bare_orders (id, merchant_id, creator_id, amount_fen, state, version) "
            "VALUES ($1, $2, $3, $4, 'pending_acceptance', 1)",
            order_id,
            data["merchant_id"],
            data["creator_id"],
            amount,
        )
        txn = uuid.uuid4().hex
        await conn.executemany(
            "INSERT INTO bare_ledger (id, txn_id, account, amount_fen) VALUES ($1, $2, $3, $4)",
            [
                (uuid.uuid4().hex, txn, f"{data['merchant_id']}:available", -amount),
                (uuid.uuid4().hex, txn, f"{data['merchant_id']}:frozen", amount),
            ],
        )
    return 201, {"id": order_id, "state": "pending_acceptance"}


async def accept(order_id: str) -> tuple[int, dict]:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT state, version FROM bare_orders WHERE id = $1 FOR UPDATE", order_id)
        if row is None:
            return 404, {"code": "not_found"}
        if row["state"] != "pending_acceptance":
            return 409, {"code": "invalid_transition"}
        await conn.execute("UPDATE bare_orders SET state = 'waiting_live', version = version + 1 WHERE id = $1", order_id)
        await conn.execute(
            "INSERT INTO bare_history (id, order_id, from_state, to_state, actor) "
            "VALUES ($1, $2, 'pending_acceptance', 'waiting_live', 'creator')",
            uuid.uuid4().hex,
            order_id,
        )
    return 200, {"id": order_id, "state": "waiting_live"}


def _use_pool(opened: asyncpg.Pool) -> None:
    global pool
    pool = opened


@contextlib.asynccontextmanager
async def _lifespan(_: FastAPI):
    _use_pool(await asyncpg.create_pool(DSN, min_size=10, max_size=20))
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
    yield
    await pool.close()


# Served by FastAPI, like the judged tool's floor (../shared/tools/perfbar/floor_app.py): the
# reference carries the framework's per-request cost too, so `make bench` and perfbar agree.
app = FastAPI(lifespan=_lifespan)


def _answer(status: int, payload: dict) -> JSONResponse:
    return JSONResponse(payload, status_code=status)


@app.post("/orders")
async def _create(request: Request) -> JSONResponse:
    return _answer(*await create(await request.json()))


@app.post("/orders/{order_id}/accept")
async def _accept(order_id: str) -> JSONResponse:
    return _answer(*await accept(order_id))


@app.post("/seed")
async def _seed(request: Request) -> JSONResponse:
    data = await request.json()
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO bare_wallets VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE SET available_fen = EXCLUDED.available_fen",
            [(w, int(data["available_fen"])) for w in data["wallets"]],
        )
    return _answer(200, {"ok": True})


@app.get("/health")
async def _health() -> JSONResponse:
    return _answer(200, {"ok": True})
