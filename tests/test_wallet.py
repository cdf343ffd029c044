"""Wallet, ledger and top-ups through HTTP."""

from __future__ import annotations

import io

from tests.conftest import Factory
from tests.test_task_orders_support import fund, ledger_invariants, wallet


async def test_online_top_up_funds_at_once_with_balanced_lines(client, factory: Factory):
    merchant = await factory.user("merchant")
    assert await wallet(client, merchant) == {"account_id": merchant.id, "available_fen": 0, "frozen_fen": 0, "total_fen": 0}
    top_up = await fund(client, merchant, 123_456)
    assert top_up["gateway_ref"] and top_up["allowed_actions"] == []
    assert await wallet(client, merchant) == {
        "account_id": merchant.id,
        "available_fen": 123_456,
        "frozen_fen": 0,
        "total_fen": 123_456,
    }
    entries = (await client.get("/v1/wallet/entries", headers=merchant.headers)).json()
    assert [(e["kind"], e["bucket"], e["amount_fen"], e["balance_after_fen"], e["ref_id"]) for e in entries["items"]] == [
        ("top_up", "available", 123_456, 123_456, top_up["id"])
    ]
    history = (await client.get(f"/v1/wallet/top-ups/{top_up['id']}/history", headers=merchant.headers)).json()
    assert [(h["action"], h["to_state"], h["actor_role"]) for h in history] == [
        ("create", "pending", "merchant"),
        ("confirm", "succeeded", "system"),
    ]
    await ledger_invariants(factory.maker)


async def test_wallet_visibility(client, factory: Factory):
    merchant = await factory.user("merchant")
    other = await factory.user("merchant")
    op = await factory.operator()
    await fund(client, merchant, 500)
    # an operator names the account; others cannot
    assert (await client.get("/v1/wallet", headers=op.headers)).status_code == 404
    r = await client.get("/v1/wallet", headers=op.headers, params={"account_id": merchant.id})
    assert r.status_code == 200 and r.json()["available_fen"] == 500
    r = await client.get("/v1/wallet", headers=other.headers, params={"account_id": merchant.id})
    assert r.status_code == 404
    r = await client.get("/v1/wallet/entries", headers=other.headers, params={"account_id": merchant.id})
    assert r.status_code == 404
    creator = await factory.user("creator")
    assert (await wallet(client, creator))["total_fen"] == 0
    # creators do not top up
    r = await client.post("/v1/wallet/top-ups", headers=creator.headers, json={"amount_fen": 1, "method": "online"})
    assert r.status_code == 403
    for bad in (
        {"amount_fen": 0, "method": "online"},
        {"amount_fen": 1, "method": "cash"},
        {"amount_fen": 1, "method": "online", "extra": 1},
    ):
        assert (await client.post("/v1/wallet/top-ups", headers=merchant.headers, json=bad)).status_code == 422


async def test_bank_transfer_waits_for_the_operator(client, factory: Factory):
    merchant = await factory.user("merchant")
    other = await factory.user("merchant")
    op = await factory.operator()
    r = await client.post(
        "/v1/wallet/top-ups",
        headers=merchant.headers,
        json={"amount_fen": 50_000, "method": "bank_transfer", "reference": "对公转账 0001"},
    )
    assert r.status_code == 201
    top_up = r.json()
    assert top_up["state"] == "pending" and top_up["allowed_actions"] == []
    assert (await wallet(client, merchant))["available_fen"] == 0
    # the operator sees pending transfers to confirm, with its buttons
    pending = (await client.get("/v1/wallet/top-ups", headers=op.headers, params={"state": "pending"})).json()
    mine = [t for t in pending["items"] if t["id"] == top_up["id"]]
    assert mine and mine[0]["allowed_actions"] == ["confirm", "reject"]
    assert (await client.get(f"/v1/wallet/top-ups/{top_up['id']}", headers=other.headers)).status_code == 404
    assert (await client.get("/v1/wallet/top-ups", headers=other.headers)).json()["items"] == []
    assert (await client.post(f"/v1/wallet/top-ups/{top_up['id']}/confirm", headers=merchant.headers)).status_code == 403
    r = await client.post(f"/v1/wallet/top-ups/{top_up['id']}/confirm", headers=op.headers, json={"note": "到账"})
    assert r.status_code == 200 and r.json()["state"] == "succeeded" and r.json()["decided_by"] == op.id
    assert (await wallet(client, merchant))["available_fen"] == 50_000
    r = await client.post(f"/v1/wallet/top-ups/{top_up['id']}/confirm", headers=op.headers)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    assert (await wallet(client, merchant))["available_fen"] == 50_000  # credited once


async def test_top_up_machine_every_action_from_every_state(client, factory: Factory):
    """Reach every state of `top_up` and fire every action from each: allowed → moves; not
    allowed → 409 `invalid_transition`; wrong role → 403; another merchant → 404."""
    merchant = await factory.user("merchant")
    stranger = await factory.user("merchant")
    op = await factory.operator()

    async def pending() -> str:
        r = await client.post(
            "/v1/wallet/top-ups", headers=merchant.headers, json={"amount_fen": 1000, "method": "bank_transfer"}
        )
        assert r.status_code == 201
        return r.json()["id"]

    async def state(tid: str) -> str:
        return (await client.get(f"/v1/wallet/top-ups/{tid}", headers=merchant.headers)).json()["state"]

    # pending: confirm and reject move it; the merchant may never fire them; a stranger sees nothing
    for action, dest in (("confirm", "succeeded"), ("reject", "rejected")):
        tid = await pending()
        assert (await client.post(f"/v1/wallet/top-ups/{tid}/{action}", headers=merchant.headers)).status_code == 403
        assert (await client.post(f"/v1/wallet/top-ups/{tid}/{action}", headers=stranger.headers)).status_code == 403
        assert (await client.get(f"/v1/wallet/top-ups/{tid}", headers=stranger.headers)).status_code == 404
        r = await client.post(f"/v1/wallet/top-ups/{tid}/{action}", headers=op.headers)
        assert r.status_code == 200 and r.json()["state"] == dest
    # expired (timer, 7 days)
    expiring = await pending()
    confirmed = await pending()
    rejected = await pending()
    await client.post(f"/v1/wallet/top-ups/{confirmed}/confirm", headers=op.headers)
    await client.post(f"/v1/wallet/top-ups/{rejected}/reject", headers=op.headers)
    await factory.advance(7 * 86400 - 120)
    assert await state(expiring) == "pending"
    await factory.advance(180)
    assert await state(expiring) == "expired"
    history = (await client.get(f"/v1/wallet/top-ups/{expiring}/history", headers=merchant.headers)).json()
    assert history[-1]["action"] == "expire" and history[-1]["actor_id"] == "system"
    # every final state refuses every action
    for tid, final in ((confirmed, "succeeded"), (rejected, "rejected"), (expiring, "expired")):
        assert await state(tid) == final
        for action in ("confirm", "reject"):
            r = await client.post(f"/v1/wallet/top-ups/{tid}/{action}", headers=op.headers)
            assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
            assert r.json()["state"] == final and r.json()["allowed_actions"] == []
    # money: exactly the two confirmed top-ups of 1000 (plus the first loop's confirm)
    assert (await wallet(client, merchant))["available_fen"] == 2000
    await ledger_invariants(factory.maker)


async def test_export_csv_and_xlsx(client, factory: Factory):
    from openpyxl import load_workbook

    merchant = await factory.user("merchant")
    await fund(client, merchant, 10_050)
    await client.post(
        "/v1/wallet/top-ups",
        headers=merchant.headers,
        json={"amount_fen": 777, "method": "bank_transfer", "reference": "转账备注"},
    )
    r = await client.get("/v1/wallet/top-ups/export", headers=merchant.headers, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    text = r.content.decode("utf-8-sig")
    lines = text.strip().splitlines()
    assert len(lines) == 3 and "金额" in lines[0]
    assert "7.77" in lines[1] and "待确认" in lines[1] and "转账备注" in lines[1]
    assert "100.50" in lines[2] and "成功" in lines[2]
    r = await client.get("/v1/wallet/top-ups/export", headers=merchant.headers, params={"format": "xlsx"})
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    sheet = load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == 3 and rows[1][3] == 777 and rows[2][3] == 10_050
    assert rows[1][2] == 7.77 and rows[2][2] == 100.5  # the yuan column is a number too (security.md: numbers stay numbers)
    assert (await client.get("/v1/wallet/top-ups/export", headers=merchant.headers, params={"format": "pdf"})).status_code == 422
    # another merchant exports only its own (nothing)
    other = await factory.user("merchant")
    r = await client.get("/v1/wallet/top-ups/export", headers=other.headers)
    assert len(r.content.decode("utf-8-sig").strip().splitlines()) == 1


async def test_top_up_list_pagination(client, factory: Factory):
    merchant = await factory.user("merchant")
    ids = [(await fund(client, merchant, 100 + i))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/wallet/top-ups", headers=merchant.headers, params=params)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    page = (await client.get("/v1/wallet/entries", headers=merchant.headers, params={"limit": 3})).json()
    assert len(page["items"]) == 3 and page["next_cursor"]


async def test_demo_step_funds_and_binds_the_merchant_once(client, factory: Factory):
    from app.db.models.accounts import Account
    from app.demo.task_orders import demo_step

    merchant = await factory.user("merchant")
    async with factory.maker() as session:
        account = await session.get(Account, merchant.id)
        first = await demo_step(session, {"merchant": account})
        second = await demo_step(session, {"merchant": account})
        await session.commit()
    assert len(first) == 2 and second == []
    assert (await wallet(client, merchant))["available_fen"] == 1_000_000
    me = (await client.get("/v1/accounts/me", headers=merchant.headers)).json()
    assert me["profile"]["xingtu_account_id"]
    await ledger_invariants(factory.maker)
