"""Parts of the client contract (spec/client-contract.md, "Language, time, parameters"):
unknown query parameters are 422 naming them; idempotency compares the request's meaning."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.conftest import Factory


async def test_an_unknown_query_parameter_is_422_naming_it(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.get("/v1/task-orders", headers=merchant.headers, params={"state": "pending_acceptance"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed" and "state" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["query", "state"]
    # declared ones still work, including a dependency's (the page's limit and cursor)
    r = await client.get("/v1/task-orders", headers=merchant.headers, params={"status": "in_progress", "limit": 5})
    assert r.status_code == 200, r.text
    # an operation without query parameters refuses any
    r = await client.get("/v1/wallet", headers=merchant.headers, params={"verbose": "1"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "verbose"]


async def test_idempotency_compares_meaning_not_bytes(client, factory: Factory):
    merchant = await factory.user("merchant")
    headers = {**merchant.headers, "Idempotency-Key": "meaning-1", "Content-Type": "application/json"}
    body = {"title": "Once", "price_fen": 100, "inventory": 3}
    first = await client.post("/v1/products", headers=headers, content=json.dumps(body))
    assert first.status_code == 201, first.text
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)  # other order, other white space
    again = await client.post("/v1/products", headers=headers, content=reordered)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["id"] == first.json()["id"]
    changed = await client.post("/v1/products", headers=headers, content=json.dumps({**body, "inventory": 4}))
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused"


async def test_every_signed_in_caller_reads_business_time(client, factory: Factory):
    creator = await factory.user("creator")
    before = await factory.now()
    await factory.advance(3600)
    r = await client.get("/v1/clock", headers=creator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["test_clock"] is True and body["now"].endswith("Z"), body
    from datetime import datetime, timedelta

    now = datetime.fromisoformat(body["now"].replace("Z", "+00:00"))
    assert now - before >= timedelta(seconds=3600)
    assert (await client.get("/v1/clock")).status_code == 401


# ------------------------------------------------------------------ conditional requests
_CANCEL = {"reason": {"code": "schedule_changed", "note": "档期冲突"}}


async def _accepted_behind_the_merchants_back(client, factory: Factory):
    from datetime import timedelta

    from tests.test_task_orders_support import minute, order_body, ready_merchant, wallet

    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    r = await client.post(
        "/v1/task-orders",
        headers=merchant.headers,
        json=order_body(creator, product_id, minute(await factory.now() + timedelta(days=5))),
    )
    assert r.status_code == 201 and r.headers["etag"] == f'"{r.json()["version"]}"', r.headers
    screen = r.json()  # what the merchant's page shows: pending acceptance, version 1
    r = await client.post(f"/v1/task-orders/{screen['id']}/accept", headers=creator.headers)
    assert r.status_code == 200 and r.headers["etag"] == f'"{screen["version"] + 1}"'
    return merchant, screen, await wallet(client, merchant)


async def test_a_stale_screen_cancel_is_412_and_moves_no_money(client, factory: Factory):
    """The issue's reproduction: the merchant's page still shows 'not accepted' (version 1)
    when it cancels; the creator accepted meanwhile (version 2). With If-Match it answers 412
    with the order as it is now, and nothing happens."""
    from tests.test_task_orders_support import wallet

    merchant, screen, before = await _accepted_behind_the_merchants_back(client, factory)
    url = f"/v1/task-orders/{screen['id']}"
    r = await client.post(f"{url}/cancel", headers={**merchant.headers, "If-Match": f'"{screen["version"]}"'}, json=_CANCEL)
    assert r.status_code == 412, r.text
    problem = r.json()
    assert problem["code"] == "precondition_failed"
    assert (problem["state"], problem["version"]) == ("waiting_live", screen["version"] + 1)
    assert "cancel" in problem["allowed_actions"]
    now = (await client.get(url, headers=merchant.headers)).json()
    assert (now["state"], now["version"]) == ("waiting_live", screen["version"] + 1)
    assert await wallet(client, merchant) == before  # no compensation paid
    # with the version it now has, the same cancel applies
    r = await client.post(f"{url}/cancel", headers={**merchant.headers, "If-Match": f'"{now["version"]}"'}, json=_CANCEL)
    assert r.status_code == 200 and r.json()["state"] == "cancelled_by_merchant", r.text


async def test_etag_and_if_none_match_on_reads(client, factory: Factory):
    merchant, screen, _ = await _accepted_behind_the_merchants_back(client, factory)
    url = f"/v1/task-orders/{screen['id']}"
    r = await client.get(url, headers=merchant.headers)
    etag = r.headers["etag"]
    assert etag == f'"{r.json()["version"]}"'
    r = await client.get(url, headers={**merchant.headers, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = await client.get(url, headers={**merchant.headers, "If-None-Match": '"1"'})
    assert r.status_code == 200
    for header in (f"W/{etag}", f'"1", {etag}', "*"):  # RFC 9110: weak comparison, a list, any
        r = await client.get(url, headers={**merchant.headers, "If-None-Match": header})
        assert r.status_code == 304, header
    bad = await client.post(f"{url}/cancel", headers={**merchant.headers, "If-Match": "yesterday"}, json=_CANCEL)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "If-Match"]
    star = await client.post(f"{url}/cancel", headers={**merchant.headers, "If-Match": "*"}, json=_CANCEL)
    assert star.status_code == 200, star.text


async def test_states_actions_statuses_and_event_types_are_named_enums_from_the_machines(client, factory: Factory):
    """A typed contract: every entity's `state` and `allowed_actions` items, the task order's
    `status`/`sub_status` and an event's `type` are enums in OpenAPI, built from the machines."""
    from app.modules import EVENT_TYPES, WORKFLOWS
    from app.state.task_order import STATUS

    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    answers = {
        "TaskOrderOut": "task_order",
        "DisputeOut": "dispute",
        "TopUpOut": "top_up",
        "CampaignOut": "campaign",
        "CampaignSignupOut": "campaign_signup",
        "CreatorBindingOut": "creator_binding",
        "ShopBindingOut": "shop_binding",
        "CheckInOut": "check_in",
        "CooperationOut": "cooperation",
        "ContractOut": "provider_contract",
        "StatementOut": "incentive_statement",
        "VoucherOut": "voucher",
        "RedemptionOut": "redemption",
    }
    assert set(answers.values()) == set(WORKFLOWS)
    for answer, machine in answers.items():
        workflow = WORKFLOWS[machine]
        props = components[answer]["properties"]
        state_ref = props["state"]["$ref"].rsplit("/", 1)[1]
        action_ref = props["allowed_actions"]["items"]["$ref"].rsplit("/", 1)[1]
        assert components[state_ref]["enum"] == workflow.states, answer
        assert components[action_ref]["enum"] == workflow.actions, answer
    order = components["TaskOrderOut"]["properties"]
    assert components["TaskOrderStatus"]["enum"] == list(dict.fromkeys(s for s, _ in STATUS.values()))
    assert order["sub_status"]["anyOf"][0]["$ref"].endswith("/TaskOrderSubStatus")
    # list filters use the same enums: a misspelt state is 422, not an empty page
    merchant = await factory.user("merchant")
    r = await client.get("/v1/wallet/top-ups", headers=merchant.headers, params={"state": "succeded"})
    assert r.status_code == 422
    assert (await client.get("/v1/wallet/top-ups", headers=merchant.headers, params={"state": "succeeded"})).status_code == 200
    # the event catalogue
    assert components["EventOut"]["properties"]["type"] == {"$ref": "#/components/schemas/EventType"}
    assert components["EventType"]["enum"] == list(EVENT_TYPES)
    assert {"task_order.created", "task_order.accepted", "campaign_signup.traffic_granted"} <= set(EVENT_TYPES)


async def test_every_event_written_is_in_the_catalogue(client, factory: Factory):
    from app.modules import EVENT_TYPES
    from tests.test_task_orders_support import CANCEL, act, create_order, minute, ready_merchant

    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    now = await factory.now()
    first = await create_order(client, merchant, creator, product, minute(now + timedelta(days=3)))
    second = await create_order(client, merchant, creator, product, minute(now + timedelta(days=3)))
    assert (await act(client, merchant, first["id"], "remind")).status_code == 200
    assert (await act(client, creator, first["id"], "accept")).status_code == 200
    assert (await act(client, merchant, first["id"], "cancel", CANCEL)).status_code == 200
    assert (await act(client, creator, second["id"], "reject")).status_code == 200
    events = (await client.get("/v1/events", headers=merchant.headers, params={"limit": 100})).json()["items"]
    types = {e["type"] for e in events}
    assert {"task_order.created", "task_order.reminded", "task_order.accepted", "task_order.cancelled"} <= types
    assert types <= set(EVENT_TYPES)


async def test_if_match_on_a_patch_of_a_versioned_entity(client, factory: Factory):
    """If-Match on a PATCH (client-contract.md): a creator binding's commission set from a stale
    screen is 412 with the binding now, and nothing changes; with the current version it applies."""
    from tests.test_live_bases import invite_creator

    agency = await factory.user("agency")
    creator = await factory.user("creator")
    invited = await invite_creator(client, agency, creator)
    url = f"/v1/creator-bindings/{invited['id']}"
    accepted = (await client.post(f"{url}/accept", headers=creator.headers)).json()
    assert accepted["version"] == invited["version"] + 1
    stale = await client.patch(
        url, headers={**agency.headers, "If-Match": f'"{invited["version"]}"'}, json={"commission_bp": 1500}
    )
    assert stale.status_code == 412 and stale.json()["code"] == "precondition_failed"
    assert stale.json()["version"] == accepted["version"] and stale.json()["state"] == "active"
    assert (await client.get(url, headers=agency.headers)).json()["commission_bp"] == invited["commission_bp"]
    fresh = await client.patch(
        url, headers={**agency.headers, "If-Match": f'"{accepted["version"]}"'}, json={"commission_bp": 1500}
    )
    assert fresh.status_code == 200 and fresh.json()["commission_bp"] == 1500
    assert fresh.headers["etag"] == f'"{accepted["version"] + 1}"'


async def test_a_put_accepts_the_body_its_get_answered(client, factory: Factory):
    """Read-modify-write (client-contract.md): the GET's answer, fields the server owns and all
    (`effective_from`, `scheduled`, `campaign_id`), is a valid PUT body; other unknown fields stay 422."""
    from tests.test_campaigns import make_campaign

    op = await factory.operator()
    policy = await client.get("/v1/admin/quota-policy", headers=op.headers)
    assert policy.status_code == 200 and "effective_from" in policy.json()
    body = policy.json()
    body["fixed"] = {**body["fixed"], "agency_to_creator": body["fixed"]["agency_to_creator"] + 1}
    put = await client.put("/v1/admin/quota-policy", headers=op.headers, json=body)
    assert put.status_code == 200, put.text
    assert put.json()["scheduled"]["fixed"]["agency_to_creator"] == body["fixed"]["agency_to_creator"]
    assert (await client.put("/v1/admin/quota-policy", headers=op.headers, json={**body, "surprise": 1})).status_code == 422

    r = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": ["2026-12-25"]})
    assert r.status_code == 200 and r.json()["dates"] == ["2026-12-25"]  # (no GET: its own answer)
    assert (await client.put("/v1/admin/holidays", headers=op.headers, json=r.json())).status_code == 200

    campaign = await make_campaign(client, factory)
    creator = await factory.user("creator")
    url = f"/v1/campaigns/{campaign['id']}/eligible-creators"
    listed = (await client.get(url, headers=op.headers)).json()
    r = await client.put(url, headers=op.headers, json={**listed, "creator_ids": [*listed["creator_ids"], creator.id]})
    assert r.status_code == 200 and creator.id in r.json()["creator_ids"], r.text
