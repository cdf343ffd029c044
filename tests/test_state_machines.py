"""Every registered machine: listed with roles, drawn as Mermaid and SVG, and well formed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from app.modules import WORKFLOWS


def test_every_state_is_reachable_and_every_rule_is_sane():
    for name, workflow in WORKFLOWS.items():
        reachable = {workflow.initial}
        changed = True
        while changed:
            changed = False
            for r in workflow.rules:
                if r.dest and r.dest not in reachable and reachable & set(r.source):
                    reachable.add(r.dest)
                    changed = True
        assert reachable == set(workflow.states), f"{name}: unreachable {set(workflow.states) - reachable}"
        for r in workflow.rules:
            assert r.roles, f"{name}.{r.action} has no role"
        for final in workflow.final_states:
            assert not any(final in r.source and r.dest for r in workflow.rules if r.dest != final), (
                f"{name}: final state {final} has a way out"
            )


@pytest.mark.parametrize(
    "machine,action,expected",
    [
        ("task_order", "accept", "accepted"),
        ("task_order", "approve", "approved"),
        ("task_order", "cancel", "cancelled"),
        ("dispute", "withdraw", "withdrawn"),
        ("campaign_signup", "merchant-approve", "merchant_approved"),
        ("check_in", "check-out", "checked_out"),
        ("top_up", "reject", "rejected"),
        ("campaign_signup", "grant-traffic", "traffic_granted"),
        ("campaign_signup", "merchant-confirm-stock", "merchant_stock_confirmed"),
        ("campaign_signup", "submit-products", "products_submitted"),
        ("redemption", "fulfil", "fulfilled"),
    ],
)
def test_each_rule_names_its_event_type(machine, action, expected):
    """Event types are public API: each rule names its own (no past tense guessed from the
    action), and the machine's catalogue lists them with `<machine>.created`."""
    workflow = WORKFLOWS[machine]
    assert {r.event for r in workflow.rules_for(action)} == {expected}
    assert f"{machine}.{expected}" in workflow.event_types
    assert workflow.event_types[0] == f"{machine}.created"


def test_rule_refuses_an_event_name_that_is_not_snake_case():
    from app.state.core import rule

    with pytest.raises(ValueError):
        rule("pay", "a", "b", "merchant", event="Payed!")


async def test_listing_and_diagrams(client, factory):
    user = await factory.user("merchant")
    listed = (await client.get("/v1/state-machines", headers=user.headers)).json()
    assert {m["name"] for m in listed} == set(WORKFLOWS)
    for machine in listed:
        assert machine["initial"] in machine["states"]
        assert all(t["roles"] for t in machine["transitions"])
        mermaid = await client.get(f"/v1/state-machines/{machine['name']}/diagram", headers=user.headers)
        assert mermaid.status_code == 200 and mermaid.headers["content-type"].startswith("text/plain")
        assert "stateDiagram-v2" in mermaid.text
        for t in machine["transitions"]:
            assert t["action"] in mermaid.text
        svg = await client.get(f"/v1/state-machines/{machine['name']}/diagram", headers=user.headers, params={"format": "svg"})
        assert svg.headers["content-type"].startswith("image/svg+xml")
        root = ET.fromstring(svg.text)
        texts = {el.text for el in root.iter("{http://www.w3.org/2000/svg}text")}
        assert set(machine["states"]) <= texts
    assert (await client.get("/v1/state-machines/nope/diagram", headers=user.headers)).status_code == 404
    r = await client.get(
        f"/v1/state-machines/{listed[0]['name']}/diagram" if listed else "/v1/state-machines/x/diagram",
        headers=user.headers,
        params={"format": "png"},
    )
    assert r.status_code in (404, 422)


async def test_a_transition_with_its_changes_is_one_version_step(client, factory):
    """`fire(changes=...)` writes the effect columns in the transition's own UPDATE."""
    from tests.test_task_orders_support import act, create_order, ready_merchant

    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    start = (await factory.now()).replace(second=0, microsecond=0)
    from datetime import timedelta

    order = await create_order(client, merchant, creator, product_id, start + timedelta(days=5))
    accepted = (await act(client, creator, order["id"], "accept")).json()
    assert accepted["state"] == "waiting_live"
    assert accepted["version"] == order["version"] + 1
