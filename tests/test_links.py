"""Links the service hands out (client-contract.md, "Links a page can show"): signed, expiring
within an hour, usable with no bearer token; tampered or expired ones are 403; their base is
LC_PUBLIC_BASE_URL or the request's scheme and host (X-Forwarded-* from trusted proxies)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx

from app.core import links
from app.core.config import get_settings
from tests.conftest import Factory
from tests.test_live_bases import make_base


async def _check_in_code(client, factory: Factory, **headers: str) -> tuple[dict, dict]:
    agency = await factory.user("agency")
    base = await make_base(client, agency)
    r = await client.get(f"/v1/live-bases/{base['id']}/check-in-code", headers={**agency.headers, **headers})
    assert r.status_code == 200, r.text
    return base, r.json()


async def test_a_signed_picture_link_works_without_a_token_and_only_as_signed(client, factory: Factory):
    base, code = await _check_in_code(client, factory)
    link = httpx.URL(code["svg_url"])
    assert link.path == f"/v1/live-bases/{base['id']}/check-in-code.svg"
    assert {"u", "r", "exp", "sig"} <= set(link.params)
    assert int(link.params["exp"]) <= time.time() + 3600
    picture = await client.get(code["svg_url"])
    assert picture.status_code == 200 and picture.content.lstrip().startswith(b"<?xml")
    other_base = await make_base(client, await factory.user("agency"))
    for tampered in (
        link.copy_with(path=f"/v1/live-bases/{other_base['id']}/check-in-code.svg"),  # another base
        link.copy_set_param("exp", str(int(link.params["exp"]) + 60)),  # a longer life
        link.copy_set_param("sig", "x" + link.params["sig"][1:]),
        link.copy_set_param("sig", "\u0080" + link.params["sig"][1:]),  # non-ASCII (schemathesis found a 500)
        link.copy_remove_param("sig"),
    ):
        r = await client.get(str(tampered))
        assert r.status_code == 403 and r.json()["code"] == "forbidden", str(tampered)


async def test_an_expired_link_is_403(client, factory: Factory, monkeypatch):
    _, code = await _check_in_code(client, factory)
    monkeypatch.setattr(links, "time", SimpleNamespace(time=lambda: time.time() + 3601))
    r = await client.get(code["svg_url"])
    assert r.status_code == 403 and "expired" in r.json()["detail"]


async def test_machine_pictures_are_signed_links(client, factory: Factory):
    user = await factory.user("creator")
    machines = (await client.get("/v1/state-machines", headers=user.headers)).json()
    for machine in machines:
        svg = await client.get(machine["diagram_svg_url"])
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml"), machine["name"]


async def test_a_signature_with_non_ascii_characters_is_403_not_500(client, factory: Factory):
    """Found by Schemathesis: `?sig=%C2%80` made hmac.compare_digest raise TypeError."""
    user = await factory.user("creator")
    [machine, *_] = (await client.get("/v1/state-machines", headers=user.headers)).json()
    tampered = httpx.URL(machine["diagram_svg_url"]).copy_set_param("sig", "\x80签")
    r = await client.get(str(tampered))
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text


async def test_the_base_is_configured_or_the_request_s_own(client, factory: Factory, monkeypatch):
    # behind a trusted proxy (the test client connects from 127.0.0.1): its forwarded scheme and host
    _, code = await _check_in_code(client, factory, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "collab.example"})
    assert code["svg_url"].startswith("https://collab.example/") and code["url"].startswith("https://collab.example/check-in?")
    # from an address that is not a trusted proxy, forwarded headers are ignored
    monkeypatch.setattr(get_settings(), "trusted_proxies", ["10.0.0.0/8"])
    _, code = await _check_in_code(client, factory, **{"X-Forwarded-Host": "evil.example"})
    assert code["svg_url"].startswith("http://test/")
    # LC_PUBLIC_BASE_URL wins
    monkeypatch.setattr(get_settings(), "public_base_url", "https://live-collab.example/")
    _, code = await _check_in_code(client, factory)
    assert code["svg_url"].startswith("https://live-collab.example/v1/live-bases/")


async def test_a_suspended_accounts_links_are_403_and_work_again_once_reinstated(client, factory: Factory):
    """A suspension ends every session at once (security.md): the pictures and downloads already
    handed out to the account stop too, not an hour later."""
    agency = await factory.user("agency")
    base = await make_base(client, agency)
    code = (await client.get(f"/v1/live-bases/{base['id']}/check-in-code", headers=agency.headers)).json()
    assert (await client.get(code["svg_url"])).status_code == 200
    operator = await factory.operator()
    r = await client.post(f"/v1/accounts/{agency.id}/suspend", headers=operator.headers, json={"reason": "fraud check"})
    assert r.status_code == 200, r.text
    refused = await client.get(code["svg_url"])
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert "suspended" in refused.json()["detail"]
    assert (await client.post(f"/v1/accounts/{agency.id}/reinstate", headers=operator.headers)).status_code == 200
    assert (await client.get(code["svg_url"])).status_code == 200  # the link itself was never revoked


async def test_a_link_of_an_account_that_does_not_exist_is_403(client, factory: Factory):
    user = await factory.user("creator")
    machines = (await client.get("/v1/state-machines", headers=user.headers)).json()
    path = httpx.URL(machines[0]["diagram_svg_url"]).path
    assert (await client.get(links.signed(path, user.id, "creator"))).status_code == 200
    for account_id, role in (("acc_" + "0" * 26, "creator"), (user.id, "merchant")):  # nobody; not its role
        r = await client.get(links.signed(path, account_id, role))
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (account_id, role)
