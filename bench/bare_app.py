"""The reference: bare asyncpg endpoints doing the same transactions as the service's
create (with its freeze) and accept, with no framework, ORM, validation or auth.

    create: lock the merchant's wallet row, move available → frozen, insert the order,
            insert two ledger lines
    accept: lock the order row, update its state, insert a history row
"""

from __future__ import annotations

import os
import uuid

import asyncpg

from bench.common import answer, lifespan, read_body

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
        wallet = await conn.fetchrow("SELECT available_fen FROM bare_wallets WHERE id = $1 FOR UPDATE",
                                     data["merchant_id"])
        amount = int(data["amount_fen"])
        if wallet is None or wallet["available_fen"] < amount:
            return 409, {"code": "insufficient_balance"}
        await conn.execute("UPDATE bare_wallets SET available_fen = available_fen - $2, frozen_fen = frozen_fen + $2 "
                           "WHERE id = $1", data["merchant_id"], amount)
        order_id = uuid.uuid4().hex
        await conn.execute("INSERT INTO bare_orders (id, merchant_id, creator_id, amount_fen, state, version) "
                           "VALUES ($1, $2, $3, $4, 'pending_acceptance', 1)",
                           order_id, data["merchant_id"], data["creator_id"], amount)
        txn = uuid.uuid4().hex
        await conn.executemany("INSERT INTO bare_ledger (id, txn_id, account, amount_fen) VALUES ($1, $2, $3, $4)",
                               [(uuid.uuid4().hex, txn, f"{data['merchant_id']}:available", -amount),
                                (uuid.uuid4().hex, txn, f"{data['merchant_id']}:frozen", amount)])
    return 201, {"id": order_id, "state": "pending_acceptance"}


async def accept(order_id: str) -> tuple[int, dict]:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT state, version FROM bare_orders WHERE id = $1 FOR UPDATE", order_id)
        if row is None:
            return 404, {"code": "not_found"}
        if row["state"] != "pending_acceptance":
            return 409, {"code": "invalid_transition"}
        await conn.execute("UPDATE bare_orders SET state = 'waiting_live', version = version + 1 WHERE id = $1",
                           order_id)
        await conn.execute("INSERT INTO bare_history (id, order_id, from_state, to_state, actor) "
                           "VALUES ($1, $2, 'pending_acceptance', 'waiting_live', 'creator')",
                           uuid.uuid4().hex, order_id)
    return 200, {"id": order_id, "state": "waiting_live"}


def _use_pool(opened: asyncpg.Pool) -> None:
    global pool
    pool = opened


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send, DSN, SCHEMA, _use_pool)
        return
    path = scope["path"]
    data = await read_body(receive)
    if path == "/orders":
        status, payload = await create(data)
    elif path.startswith("/orders/") and path.endswith("/accept"):
        status, payload = await accept(path.split("/")[2])
    elif path == "/seed":
        async with pool.acquire() as conn:
            await conn.executemany("INSERT INTO bare_wallets VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE "
                                   "SET available_fen = EXCLUDED.available_fen",
                                   [(w, int(data["available_fen"])) for w in data["wallets"]])
        status, payload = 200, {"ok": True}
    else:
        status, payload = 404, {"code": "not_found"}
    await answer(send, status, payload)
