"""Webhooks that cannot reach inside (security.md): URLs that name or resolve to non-public
addresses are 422 `webhook_url_not_allowed` at registration and refused again at delivery,
which connects to the address it checked (DNS rebinding cannot move it); delivery errors are
generic; webhooks can be changed, disabled, deleted and their secrets rotated (both signatures
for 24 h); an endpoint failing for 5 days is disabled with `webhook.disabled`.

Names are resolved by the suite's stub resolver (conftest `stub_resolver`): no test looks a
name up for real, and the refusals are checked to happen without any connection."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.core.config import get_settings
from app.db.models.webhooks import WebhookSubscription
from app.domain import webhooks
from app.domain.webhooks import deliver_due, targets
from tests.conftest import Factory
from tests.test_webhooks import deliveries, emit, later
from tests.test_webhooks_support import Receiver

SECRET = "whsec-targets-0123456789"

REFUSED = [
    "http://127.0.0.1:5432/",
    "http://127.8.9.10/",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:6379/",
    "http://LOCALHOST./x",
    "http://api.localhost/x",
    "http://[::1]/",
    "http://[::]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://0.0.0.0/",
    "http://10.0.0.7/",
    "http://172.16.5.4/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://224.0.0.251/",
    "http://[ff02::1]/",
    "https://internal.test/hook",  # resolves (stub) to a private address
    "https://mixed.test/hook",  # one public and one loopback address: every address counts
    "https://metadata.test/hook",  # resolves to the metadata service
    "https://unknown.test/hook",  # does not resolve
]


@pytest.fixture
def names(stub_resolver) -> dict[str, list[str]]:
    stub_resolver.update(
        {
            "internal.test": ["10.1.2.3"],
            "mixed.test": ["93.184.215.14", "127.0.0.1"],
            "metadata.test": ["169.254.169.254"],
            "public.test": ["93.184.215.14", "2606:2800:220:1:248:1893:25c8:1946"],
        }
    )
    return stub_resolver


@pytest.fixture
def no_connections(monkeypatch) -> list[object]:
    """Any attempt to open a connection fails the test (recorded, and raised)."""
    tried: list[object] = []

    def refuse(self, address, *args, **kwargs):
        tried.append(address)
        raise AssertionError(f"a connection to {address} was tried")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    original = asyncio.base_events.BaseEventLoop.create_connection

    async def create_connection(self, *args, **kwargs):
        tried.append(args[1:3])
        raise AssertionError(f"a connection to {args[1:3]} was tried")

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", create_connection)
    yield tried
    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", original)


async def _create(client, user, url: str, secret: str = SECRET):
    return await client.post("/v1/webhooks", headers=user.headers, json={"url": url, "event_types": ["*"], "secret": secret})


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_targets_are_refused_without_connecting(client, factory: Factory, names, url: str):
    merchant = await factory.user("merchant")
    with pytest.MonkeyPatch.context() as patch:
        tried: list[object] = []

        def refuse(self, address, *args, **kwargs):
            tried.append(address)
            raise AssertionError("connected")

        patch.setattr(socket.socket, "connect", refuse)
        r = await _create(client, merchant, url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "webhook_url_not_allowed" and body["errors"][0]["loc"] == ["body", "url"]
    assert tried == []
    assert (await client.get("/v1/webhooks", headers=merchant.headers)).json()["items"] == []


async def test_public_names_and_addresses_are_accepted(client, factory: Factory, names, no_connections):
    merchant = await factory.user("merchant")
    for url in ("https://public.test/hook", "https://93.184.215.14:8443/x", "http://[2606:2800:220:1::1]/h"):
        r = await _create(client, merchant, url)
        assert r.status_code == 201, (url, r.text)
        assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    assert no_connections == []


async def test_allowed_hosts_let_loopback_through(client, factory: Factory, monkeypatch):
    merchant = await factory.user("merchant")
    url = "http://127.0.0.1:9/hook"
    assert (await _create(client, merchant, url)).status_code == 422  # empty by default
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1", "[::1]"])
    assert (await _create(client, merchant, url)).status_code == 201
    assert (await _create(client, merchant, "http://[::1]:9/hook")).status_code == 201
    assert (await _create(client, merchant, "http://localhost:9/hook")).status_code == 422  # only what is listed


def test_allowed_hosts_setting_is_a_comma_list(monkeypatch):
    from app.core.config import Settings

    monkeypatch.setenv("LC_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1, localhost ,")
    assert Settings().webhook_allowed_hosts == ["127.0.0.1", "localhost"]
    monkeypatch.delenv("LC_WEBHOOK_ALLOWED_HOSTS")
    assert Settings().webhook_allowed_hosts == []


# --------------------------------------------------------------------------- at delivery
async def test_rebinding_after_registration_is_refused_at_delivery(client, factory: Factory, names, monkeypatch):
    """The name resolved to a public address at registration; by delivery it points inside:
    the delivery is refused (no connection) and records `url_not_allowed`."""
    creator = await factory.user("creator")
    names["rebind.test"] = ["93.184.215.14"]
    r = await _create(client, creator, "http://rebind.test:8080/hook")
    assert r.status_code == 201, r.text
    names["rebind.test"] = ["127.0.0.1"]
    await emit(factory.maker, "task_order.accepted", [creator.id])
    tried: list[object] = []

    async def create_connection(self, *args, **kwargs):
        tried.append(args[1:3])
        raise AssertionError("connected")

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", create_connection)
    assert await deliver_due(factory.maker) == 1
    monkeypatch.undo()
    [d] = await deliveries(client, creator, r.json()["id"])
    assert d["status"] == "pending" and d["last_error"] == "url_not_allowed" and d["last_status_code"] is None
    assert tried == []
    del names["rebind.test"]  # the name does not resolve any more: a failed connection, generic
    assert await deliver_due(factory.maker, now=later(5)) == 1
    [d] = await deliveries(client, creator, r.json()["id"])
    assert d["attempts"] == 2 and d["last_error"] == "connect_failed"


async def test_delivery_goes_to_the_checked_address_with_the_host_name(client, factory: Factory, names, monkeypatch):
    """The relay connects to the address it checked, not to whatever the name resolves to a
    moment later; `Host` keeps the name. (Loopback stands in for a public address here: the
    check is told it is public, and the resolver answers differently on every call.)"""
    real = targets.refusal_of_address
    monkeypatch.setattr(targets, "refusal_of_address", lambda a: None if str(a) == "127.0.0.1" else real(a))
    creator = await factory.user("creator")
    answers = iter([["127.0.0.1"], ["127.0.0.1"]])

    async def flipping(host: str, port: int) -> list[str]:
        assert host == "pinned.test"
        return next(answers, ["10.9.9.9"])  # any later lookup would point elsewhere

    monkeypatch.setattr(targets, "RESOLVE", flipping)
    with Receiver(SECRET) as receiver:
        port = receiver.server.server_address[1]
        r = await _create(client, creator, f"http://pinned.test:{port}/hook")
        assert r.status_code == 201, r.text
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"pinned.test:{port}" and request["valid"]
    [d] = await deliveries(client, creator, r.json()["id"])
    assert d["status"] == "succeeded"


async def test_delivery_errors_are_generic(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
    monkeypatch.setattr(webhooks.relay, "REQUEST_TIMEOUT_SECONDS", 0.3)
    creator = await factory.user("creator")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        with Receiver(SECRET, fail_first=5, fail_status=503) as failing:
            hooks = {
                "refused": (await _create(client, creator, refused_url)).json()["id"],
                "silent": (await _create(client, creator, f"http://127.0.0.1:{silent.getsockname()[1]}/hook")).json()["id"],
                "failing": (await _create(client, creator, failing.url)).json()["id"],
            }
            await emit(factory.maker, "task_order.accepted", [creator.id])
            assert await deliver_due(factory.maker) == 3
    finally:
        silent.close()
    errors = {name: (await deliveries(client, creator, hook_id))[0]["last_error"] for name, hook_id in hooks.items()}
    assert errors == {"refused": "connect_failed", "silent": "timeout", "failing": "http_503"}


# --------------------------------------------------------------------------- PATCH, DELETE, rotate
async def test_patch_url_types_and_enabled(client, factory: Factory, names, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
    creator = await factory.user("creator")
    stranger = await factory.user("creator")
    with Receiver(SECRET) as receiver:
        hook = (await _create(client, creator, "https://public.test/hook")).json()
        path = f"/v1/webhooks/{hook['id']}"
        r = await client.patch(path, headers=creator.headers, json={"url": "http://169.254.169.254/"})
        assert r.status_code == 422 and r.json()["code"] == "webhook_url_not_allowed"
        for bad in ({"enabled": None}, {"enabled": 1}, {"event_types": []}, {"url": "ftp://x/y"}, {"secret": "x" * 10}):
            assert (await client.patch(path, headers=creator.headers, json=bad)).status_code == 422, bad
        assert (await client.patch(path, headers=stranger.headers, json={"enabled": False})).status_code == 404
        assert (await client.patch("/v1/webhooks/whk_missing", headers=creator.headers, json={})).status_code == 404

        r = await client.patch(path, headers=creator.headers, json={"url": receiver.url, "event_types": ["task_order.*"]})
        assert r.status_code == 200, r.text
        assert r.json()["url"] == receiver.url and r.json()["event_types"] == ["task_order.*"]

        r = await client.patch(path, headers=creator.headers, json={"enabled": False})
        assert r.json()["enabled"] is False and r.json()["active"] is False and r.json()["disabled_reason"] == "owner"
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 0  # disabled: nothing is sent
        assert receiver.requests == []

        r = await client.patch(path, headers=creator.headers, json={"enabled": True})
        assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
        unwanted = await emit(factory.maker, "top_up.confirmed", [creator.id])  # not subscribed any more
        wanted = await emit(factory.maker, "task_order.created", [creator.id])
        # (an event of the last seconds before enabling may go out too: fan-out settles for 30 s)
        assert await deliver_due(factory.maker) >= 1
    sent = [req["json"]["id"] for req in receiver.requests]
    assert wanted in sent and unwanted not in sent


async def test_disabled_webhook_keeps_pending_deliveries_until_enabled(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
    creator = await factory.user("creator")
    with Receiver(SECRET, fail_first=1) as receiver:
        hook = (await _create(client, creator, receiver.url)).json()
        path = f"/v1/webhooks/{hook['id']}"
        event_id = await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1  # failed once, retried later
        await client.patch(path, headers=creator.headers, json={"enabled": False})
        assert await deliver_due(factory.maker, now=later(60)) == 0
        await client.patch(path, headers=creator.headers, json={"enabled": True})
        assert await deliver_due(factory.maker, now=later(60)) == 1
    assert [r["json"]["id"] for r in receiver.succeeded] == [event_id]


async def test_delete(client, factory: Factory, names):
    creator = await factory.user("creator")
    stranger = await factory.user("creator")
    hook = (await _create(client, creator, "https://public.test/hook")).json()
    await emit(factory.maker, "task_order.accepted", [creator.id])
    await webhooks.fan_out(factory.maker)
    assert len(await deliveries(client, creator, hook["id"])) == 1
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=stranger.headers)).status_code == 404
    r = await client.delete(f"/v1/webhooks/{hook['id']}", headers=creator.headers)
    assert r.status_code == 204 and r.content == b""
    assert (await client.get("/v1/webhooks", headers=creator.headers)).json()["items"] == []
    assert (await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=creator.headers)).status_code == 404
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=creator.headers)).status_code == 404
    assert await deliver_due(factory.maker) == 0


def _signatures(header: str) -> tuple[str, list[str]]:
    parts = [item.split("=", 1) for item in header.split(",")]
    assert parts[0][0] == "t"
    assert all(k == "v1" for k, _ in parts[1:])
    return parts[0][1], [v for _, v in parts[1:]]


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


async def test_rotated_secret_signs_with_both_for_24_hours(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
    creator = await factory.user("creator")
    stranger = await factory.user("creator")
    with Receiver() as receiver:
        hook = (await _create(client, creator, receiver.url)).json()
        path = f"/v1/webhooks/{hook['id']}/rotate-secret"
        assert (await client.post(path, headers=stranger.headers, json={})).status_code == 404
        assert (await client.post(path, headers=creator.headers, json={"secret": "short"})).status_code == 422
        r = await client.post(path, headers=creator.headers, json={"secret": "whsec-new-0123456789"})
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["secret"] == "whsec-new-0123456789" and rotated["id"] == hook["id"]
        assert "secret" not in (await client.get("/v1/webhooks", headers=creator.headers)).json()["items"][0]

        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1
        timestamp, macs = _signatures(receiver.requests[-1]["headers"]["LC-Signature"])
        body = receiver.requests[-1]["body"]
        assert macs == [_mac("whsec-new-0123456789", timestamp, body), _mac(SECRET, timestamp, body)]

        # a second rotation without a secret: the service makes one, shown this once
        generated = (await client.post(path, headers=creator.headers)).json()["secret"]
        assert len(generated) >= 32 and generated != "whsec-new-0123456789"
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1
        timestamp, macs = _signatures(receiver.requests[-1]["headers"]["LC-Signature"])
        body = receiver.requests[-1]["body"]
        assert macs == [_mac(generated, timestamp, body), _mac("whsec-new-0123456789", timestamp, body)]

        # after 24 hours only the new secret signs
        async with factory.maker() as session:
            await session.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == hook["id"])
                .values(previous_secret_expires_at=later(-1))
            )
            await session.commit()
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1
        timestamp, macs = _signatures(receiver.requests[-1]["headers"]["LC-Signature"])
        assert macs == [_mac(generated, timestamp, receiver.requests[-1]["body"])]


# --------------------------------------------------------------------------- failing for 5 days
async def test_failing_for_five_days_disables_with_an_event(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
    monkeypatch.setattr(webhooks.relay, "MAX_ATTEMPTS", 2)
    creator = await factory.user("creator")
    with Receiver(SECRET, fail_first=1000) as receiver:
        hook = (await _create(client, creator, receiver.url)).json()
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1  # the streak starts
        assert await deliver_due(factory.maker, now=later(3600)) == 1  # failed for good, an hour in
        listed = (await client.get("/v1/webhooks", headers=creator.headers)).json()["items"][0]
        assert listed["enabled"] is True  # not 5 days yet

        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker, now=later(timedelta(days=5).total_seconds() + 60)) == 1
        sent = len(receiver.requests)
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker, now=later(timedelta(days=6).total_seconds())) == 0
        assert len(receiver.requests) == sent  # disabled: nothing more goes out
    listed = (await client.get("/v1/webhooks", headers=creator.headers)).json()["items"][0]
    assert listed["enabled"] is False and listed["disabled_reason"] == "failing"
    events = (await client.get("/v1/events", headers=creator.headers)).json()["items"]
    disabled = [e for e in events if e["type"] == "webhook.disabled"]
    assert len(disabled) == 1 and disabled[0]["data"]["webhook_id"] == hook["id"]
    assert set(disabled[0]["data"]) == {"webhook_id", "url", "reason", "failing_since"}  # WebhookDisabledData
    assert disabled[0]["data"]["failing_since"].endswith("Z")  # UTC `Z`, as every time in an answer
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert "webhook.disabled" in schema["EventType"]["enum"] and "webhook" not in schema["MachineName"]["enum"]
    inbox = (await client.get("/v1/notifications", headers=creator.headers)).json()["items"]
    assert any(n["kind"] == "webhook.disabled" for n in inbox)
    # enabling it again ends the streak
    r = await client.patch(f"/v1/webhooks/{hook['id']}", headers=creator.headers, json={"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None


async def test_a_success_ends_the_failing_streak(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
    creator = await factory.user("creator")
    with Receiver(SECRET, fail_first=1) as receiver:
        hook = (await _create(client, creator, receiver.url)).json()
        await emit(factory.maker, "task_order.accepted", [creator.id])
        assert await deliver_due(factory.maker) == 1  # fails: the streak starts
        assert await deliver_due(factory.maker, now=later(2)) == 1  # succeeds: it ends
        await emit(factory.maker, "task_order.accepted", [creator.id])
        receiver.fail_left = 10
        assert await deliver_due(factory.maker, now=later(timedelta(days=5).total_seconds() + 60)) == 1
    listed = (await client.get("/v1/webhooks", headers=creator.headers)).json()["items"][0]
    assert listed["id"] == hook["id"] and listed["enabled"] is True  # a new streak, only just begun
