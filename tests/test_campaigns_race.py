"""Campaign signups under real concurrency (PostgreSQL, separately committing connections)."""

from __future__ import annotations

import asyncio

from tests.conftest import postgres_only
from tests.test_campaigns import act, sign_up, world


async def _history(client, op, signup_id):
    return (await client.get(f"/v1/campaign-signups/{signup_id}/history", headers=op.headers)).json()


@postgres_only
async def test_two_merchants_deciding_the_last_two_shops_at_once(committed_client, committed_factory):
    client = committed_client
    for decisions, expected in [(("approve", "approve"), "pending_platform"),
                                (("reject", "approve"), "pending_platform"),
                                (("reject", "reject"), "merchant_rejected")]:
        w = await world(client, committed_factory, shops=3)
        first, b, c = w.merchants
        signup = await sign_up(client, w)
        # the first shop rejects, so that the outcome depends on the two racing decisions
        assert (await act(client, first, signup["id"], "merchant-reject", {"reason": "no"})).status_code == 200
        calls = [act(client, m, signup["id"], f"merchant-{d}", {"reason": "r"} if d == "reject" else None)
                 for m, d in zip((b, c), decisions, strict=True)]
        answers = await asyncio.gather(*calls)
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.op.headers)).json()
        assert got["state"] == expected
        assert sorted(s["decision"] for s in got["shops"]) == sorted(
            ["rejected", *("approved" if d == "approve" else "rejected" for d in decisions)])
        hist = await _history(client, w.op, signup["id"])
        moves = [h for h in hist if h["from_state"] == "pending_merchant" and h["to_state"] != "pending_merchant"]
        assert len(moves) == 1 and moves[0]["to_state"] == expected
        assert len(hist) == 4  # create + three decisions
        assert got["version"] == signup["version"] + 3


@postgres_only
async def test_the_same_decision_twice_at_once_counts_once(committed_client, committed_factory):
    client = committed_client
    w = await world(client, committed_factory, shops=2)
    signup = await sign_up(client, w)
    m = w.merchants[0]
    answers = await asyncio.gather(*(act(client, m, signup["id"], "merchant-approve") for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409], [a.text for a in answers]
    hist = await _history(client, w.op, signup["id"])
    assert [h["action"] for h in hist] == ["create", "merchant-approve"]
