"""Campaign signups under real concurrency (PostgreSQL, separately committing connections)."""

from __future__ import annotations

import asyncio

from tests.conftest import postgres_only
from tests.test_campaigns import act, make_campaign, sign_up, world


async def _history(client, op, signup_id):
    return (await client.get(f"/v1/campaign-signups/{signup_id}/history", headers=op.headers)).json()


@postgres_only
async def test_two_merchants_deciding_the_last_two_shops_at_once(committed_client, committed_factory):
    client = committed_client
    for decisions, expected in [
        (("approve", "approve"), "pending_platform"),
        (("reject", "approve"), "pending_platform"),
        (("reject", "reject"), "merchant_rejected"),
    ]:
        w = await world(client, committed_factory, shops=3)
        first, b, c = w.merchants
        signup = await sign_up(client, w)
        # the first shop rejects, so that the outcome depends on the two racing decisions
        assert (await act(client, first, signup["id"], "merchant-reject", {"reason": "no"})).status_code == 200
        calls = [
            act(client, m, signup["id"], f"merchant-{d}", {"reason": "r"} if d == "reject" else None)
            for m, d in zip((b, c), decisions, strict=True)
        ]
        answers = await asyncio.gather(*calls)
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.op.headers)).json()
        assert got["state"] == expected
        assert sorted(s["decision"] for s in got["shops"]) == sorted(
            ["rejected", *("approved" if d == "approve" else "rejected" for d in decisions)]
        )
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


@postgres_only
async def test_racing_publishes_have_one_winner(committed_client, committed_factory):
    client = committed_client
    campaign = await make_campaign(client, committed_factory, publish=False)
    op = await committed_factory.operator()
    answers = await asyncio.gather(
        *(client.post(f"/v1/campaigns/{campaign['id']}/publish", headers=op.headers) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409], [a.text for a in answers]
    assert all(
        a.json()["code"] == "invalid_transition" and a.json()["state"] == "published" for a in answers if a.status_code == 409
    )
    hist = (await client.get(f"/v1/campaigns/{campaign['id']}/history", headers=op.headers)).json()
    assert [h["action"] for h in hist] == ["create", "publish"]
    got = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=op.headers)).json()
    assert got["version"] == campaign["version"] + 1


@postgres_only
async def test_racing_platform_decisions_have_one_winner(committed_client, committed_factory):
    client = committed_client
    w = await world(client, committed_factory)
    signup = await sign_up(client, w)
    assert (await act(client, w.merchants[0], signup["id"], "merchant-approve")).status_code == 200
    calls = [
        act(client, w.op, signup["id"], "platform-approve"),
        act(client, w.op, signup["id"], "platform-reject", {"reason": "no"}),
        act(client, w.creator, signup["id"], "withdraw"),
    ]
    answers = await asyncio.gather(*calls)
    codes = [a.status_code for a in answers]
    assert sorted(codes) == [200, 409, 409], [a.text for a in answers]
    winner = answers[codes.index(200)].json()
    got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.op.headers)).json()
    assert got["state"] == winner["state"] and got["version"] == signup["version"] + 2
    hist = await _history(client, w.op, signup["id"])
    assert len(hist) == 3 and hist[-1]["to_state"] == winner["state"]


@postgres_only
async def test_racing_product_submissions_replace_the_plan(committed_client, committed_factory):
    """Two revisions at once run one after the other: the plan is one of them, never both."""
    client = committed_client
    w = await world(client, committed_factory)
    signup = await sign_up(client, w)
    product = w.products[w.merchants[0].id]["id"]
    for action, user, body in [
        ("merchant-approve", w.merchants[0], None),
        ("platform-approve", w.op, None),
        ("grant-traffic", w.op, {"traffic_units": 1}),
    ]:
        assert (await act(client, user, signup["id"], action, body)).status_code == 200
    answers = await asyncio.gather(
        *(
            act(client, w.creator, signup["id"], "submit-products", {"items": [{"product_id": product, "planned_quantity": q}]})
            for q in (3, 7)
        )
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.op.headers)).json()
    assert len(got["items"]) == 1 and got["items"][0]["planned_quantity"] in (3, 7)
    assert got["version"] == signup["version"] + 5


@postgres_only
async def test_racing_card_puts_leave_one_card(committed_client, committed_factory):
    client = committed_client
    creator = await committed_factory.user("creator")
    merchant = await committed_factory.user("merchant")
    campaign = await make_campaign(client, committed_factory, eligible=[creator.id])
    answers = await asyncio.gather(
        *(
            client.put(f"/v1/campaigns/{campaign['id']}/my-card", headers=creator.headers, json={"cooperation_note": f"note {n}"})
            for n in range(4)
        )
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    items = (await client.get(f"/v1/campaigns/{campaign['id']}/creators", headers=merchant.headers)).json()["items"]
    assert len(items) == 1 and items[0]["card"]["cooperation_note"] in {f"note {n}" for n in range(4)}
