"""The four module transitions `make bench-modules` measures, on PostgreSQL as the service runs
them (pooled lean sessions, every feature on): each is a few plain reads and one statement that
carries the whole write, sent without BEGIN/COMMIT (`@one_write`), and takes no lock before it.

- campaign signup: at most 3 statements (the campaign with the caller's pre-selection and the
  clock, the shops and the creator with the slot's holder, the signup with its shops, history,
  event, timer and messages)
- QR check-in: at most 3 (the base and the clock, the creator's standing with whether a timer
  is due, the check-in with its history, event and timer); a due timer is claimed and fired
  first, in a transaction
- contact view: 2 (the two accounts and the clock, the quota's conditional UPDATE); the week's
  first view writes the quota row first, in a transaction
- voucher redemption: at most 3 (the voucher and the clock, the contracts with the notice
  period's holidays, the balance's gated UPDATE with the redemption, history and event)"""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import postgres_only
from tests.test_campaigns import world as campaign_world
from tests.test_incentives import SH, published_world
from tests.test_lean_session import Sent
from tests.test_live_bases import code_of, make_base
from tests.test_statement_budget import Statements


class Budget:
    """The statements (framing aside) and the commands' first words sent meanwhile."""

    def __init__(self, engine) -> None:
        self.statements, self.sent = Statements(engine), Sent(engine)

    def __enter__(self) -> Budget:
        self.seen = self.statements.__enter__()
        self.words = self.sent.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.sent.__exit__(*exc)
        self.statements.__exit__(*exc)

    def lean(self, most: int, write: str) -> None:
        """At most `most` statements, no BEGIN/COMMIT, no locking read, the last one the write."""
        shown = "\n".join(self.seen)
        assert len(self.seen) <= most, shown
        assert "BEGIN" not in self.words and "COMMIT" not in self.words, self.words
        assert not any("FOR UPDATE" in sql or "FOR SHARE" in sql for sql in self.seen), shown
        assert self.seen and self.seen[-1].startswith(write), shown


@postgres_only
async def test_signup_is_three_statements_without_a_transaction(committed_client, committed_factory, committed_app):
    client = committed_client
    w = await campaign_world(client, committed_factory)
    live_from = w.campaign["live_from"]
    path = f"/v1/campaigns/{w.campaign['id']}/signups"
    body = {"shop_ids": [w.merchants[0].id], "planned_live_at": live_from}
    with Budget(committed_app.state.engine) as budget:
        r = await client.post(path, headers=w.creator.headers, json=body)
    assert r.status_code == 201, r.text
    budget.lean(3, "WITH w0 AS (INSERT INTO campaign_signups")
    signup = r.json()
    # committed with everything behind it: the shop sees it, its history and its message
    r = await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.merchants[0].headers)
    assert r.status_code == 200 and r.json()["state"] == "pending_merchant", r.text
    history = (await client.get(f"/v1/campaign-signups/{signup['id']}/history", headers=w.creator.headers)).json()
    assert [h["action"] for h in history] == ["create"]
    inbox = (await client.get("/v1/notifications", headers=w.merchants[0].headers)).json()["items"]
    assert [n["kind"] for n in inbox][:1] == ["campaign_signup.created"]
    # the same slot again: a 409, and nothing written
    r = await client.post(path, headers=w.creator.headers, json=body)
    assert r.status_code == 409 and r.json()["code"] == "duplicate_signup", r.text


@postgres_only
async def test_check_in_is_three_statements_without_a_transaction(committed_client, committed_factory, committed_app):
    client = committed_client
    agency = await committed_factory.user("agency")
    creator = await committed_factory.user("creator")
    base = await make_base(client, agency)
    token = await code_of(client, agency, base["id"])
    with Budget(committed_app.state.engine) as budget:
        r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": token})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "pending_confirmation", r.text
    budget.lean(3, "WITH w0 AS (INSERT INTO check_ins")
    first = r.json()["id"]
    history = (await client.get(f"/v1/check-ins/{first}/history", headers=creator.headers)).json()
    assert [h["action"] for h in history] == ["create"]

    # ten minutes on (business time moves; no timer fires), the first one's expiry is due: the
    # next scan still writes once without a transaction (its standing is read as of now; the
    # expiry is the sweeper's, or fired by a read of that check-in, in the lock order)
    from app.state import clock

    async with committed_app.state.sessionmaker() as session:
        await clock.advance(session, 601)
        await session.commit()
    token = await code_of(client, agency, base["id"])
    with Budget(committed_app.state.engine) as due:
        r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": token})
    assert r.status_code == 201, r.text
    due.lean(3, "WITH w0 AS (INSERT INTO check_ins")
    r = await client.get(f"/v1/check-ins/{first}", headers=creator.headers)
    assert r.json()["state"] == "expired", r.text


@postgres_only
async def test_contact_view_is_two_statements_without_a_transaction(committed_client, committed_factory, committed_app):
    client = committed_client
    merchant = await committed_factory.user("merchant")
    creator = await committed_factory.user("creator")
    path = f"/v1/creators/{creator.id}/contact-views"
    # the week's first view writes the quota row (its limit snapshot), then uses a unit: two
    # writes, in one transaction
    with Budget(committed_app.state.engine) as first:
        r = await client.post(path, headers=merchant.headers, json={"field": "phone"})
    assert r.status_code == 200, r.text
    assert "BEGIN" in first.words and "COMMIT" in first.words, first.words
    with Budget(committed_app.state.engine) as budget:
        r = await client.post(path, headers=merchant.headers, json={"field": "phone"})
    assert r.status_code == 200, r.text
    budget.lean(2, "UPDATE outreach_quotas")
    quotas = (await client.get("/v1/quotas/me", headers=merchant.headers)).json()["items"]
    views = next(q for q in quotas if q["kind"] == "contact_views")
    assert views["used"] == 2, quotas  # both views counted, each once


@postgres_only
async def test_contact_views_stop_at_the_limit_without_a_transaction(committed_client, committed_factory, committed_app):
    """The conditional UPDATE is the guard: at the limit it changes nothing and the view is a
    429, still without a transaction (and no second write is attempted)."""
    client = committed_client
    merchant = await committed_factory.user("merchant")
    creator = await committed_factory.user("creator")
    path = f"/v1/creators/{creator.id}/contact-views"
    quotas = (await client.get("/v1/quotas/me", headers=merchant.headers)).json()["items"]
    limit = next(q for q in quotas if q["kind"] == "contact_views")["limit"]
    for _ in range(limit):
        r = await client.post(path, headers=merchant.headers, json={"field": "phone"})
        assert r.status_code == 200, r.text
    with Budget(committed_app.state.engine) as budget:
        r = await client.post(path, headers=merchant.headers, json={"field": "phone"})
    assert r.status_code == 429 and r.json()["code"] == "quota_exhausted", r.text
    assert "BEGIN" not in budget.words, budget.words
    quotas = (await client.get("/v1/quotas/me", headers=merchant.headers)).json()["items"]
    assert next(q for q in quotas if q["kind"] == "contact_views")["used"] == limit


@postgres_only
async def test_redemption_is_three_statements_without_a_transaction(committed_client, committed_factory, committed_app):
    client = committed_client
    w = await published_world(client, committed_factory)
    use = ((await committed_factory.now()) + timedelta(days=10)).astimezone(SH).date()
    merchant = await committed_factory.user("merchant")
    contract = await client.post(
        "/v1/provider-contracts", headers=w.provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
    )
    assert contract.status_code == 201, contract.text
    r = await client.post(f"/v1/provider-contracts/{contract.json()['id']}/accept", headers=merchant.headers)
    assert r.status_code == 200, r.text

    async def voucher() -> dict:
        items = (await client.get("/v1/vouchers", headers=w.provider.headers)).json()["items"]
        return next(v for v in items if v["id"] == w.v2["id"])

    before = await voucher()
    with Budget(committed_app.state.engine) as budget:
        r = await client.post(
            f"/v1/vouchers/{w.v2['id']}/redemptions",
            headers=w.provider.headers,
            json={"merchant_id": merchant.id, "amount_fen": 1_000, "use_date": str(use)},
        )
    assert r.status_code == 201, r.text
    budget.lean(3, "WITH gate AS (UPDATE vouchers")
    after = await voucher()
    assert after["remaining_fen"] == before["remaining_fen"] - 1_000
    assert after["version"] == before["version"] + 1
    r = await client.get(f"/v1/redemptions/{r.json()['id']}", headers=merchant.headers)
    assert r.status_code == 200 and r.json()["state"] == "requested", r.text
