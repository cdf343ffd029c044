"""The in-app inbox (站内信) and the SMS adapters: the recorder by default, the HTTP gateway by
configuration (a real receiver on 127.0.0.1), and the operator's SMS log."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.core.clock import real_now
from app.core.config import get_settings
from app.domain import notifications
from app.domain.notifications import notify, send_queued_sms, send_sms
from tests.conftest import Factory, postgres_only
from tests.test_webhooks_support import Receiver


async def _notify(maker, account_id: str, n: int) -> str:
    await asyncio.sleep(0.002)  # ids order by millisecond: keep the test's order unambiguous
    async with maker() as session:
        note = await notify(session, account_id, "task_order.reminded", f"title {n}", f"body {n}", {"task_order_id": f"tor_{n}"})
        await session.commit()
        return note.id


async def test_a_message_outside_the_catalogue_is_refused_before_anything_is_written(factory: Factory):
    """`NotificationKind` and `NotificationData` are the whole catalogue: a kind or a `data` key
    outside it is a programming error, refused before the row is written."""
    import pytest

    from app.db.models.platform import Notification

    account = await factory.user("creator")
    async with factory.maker() as session:
        with pytest.raises(ValueError, match="NOTIFICATION_KINDS"):
            await notify(session, account.id, "task_order.misspelt", "t", "b", {})
        with pytest.raises(ValueError, match="NOTIFICATION_DATA_KEYS"):
            await notify(session, account.id, "task_order.reminded", "t", "b", {"order": "tor_1"})
        from sqlalchemy import func, select

        assert (
            await session.scalar(select(func.count()).select_from(Notification).where(Notification.account_id == account.id)) == 0
        )


async def test_inbox_newest_first_unread_and_read(client, factory: Factory):
    creator = await factory.user("creator")
    other = await factory.user("merchant")
    ids = [await _notify(factory.maker, creator.id, n) for n in range(3)]
    await _notify(factory.maker, other.id, 9)

    r = await client.get("/v1/notifications", headers=creator.headers, params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [n["id"] for n in page["items"]] == [ids[2], ids[1]]
    assert page["items"][0]["title"] == "title 2" and page["items"][0]["read_at"] is None
    # `data` carries only the members its kind names (no nulls for the others)
    assert page["items"][0]["data"] == {"task_order_id": "tor_2"} and page["items"][0]["kind"] == "task_order.reminded"
    r = await client.get("/v1/notifications", headers=creator.headers, params={"cursor": page["next_cursor"]})
    assert [n["id"] for n in r.json()["items"]] == [ids[0]]

    r = await client.post(f"/v1/notifications/{ids[1]}/read", headers=creator.headers)
    assert r.status_code == 200 and r.json()["read_at"] is not None
    read_at = r.json()["read_at"]
    await factory.advance(3600)
    again = await client.post(f"/v1/notifications/{ids[1]}/read", headers=creator.headers)
    assert again.status_code == 200 and again.json()["read_at"] == read_at  # idempotent

    unread = (await client.get("/v1/notifications", headers=creator.headers, params={"unread": "true"})).json()
    assert [n["id"] for n in unread["items"]] == [ids[2], ids[0]]
    read = (await client.get("/v1/notifications", headers=creator.headers, params={"unread": "false"})).json()
    assert [n["id"] for n in read["items"]] == [ids[1]]

    # another account's notification is not found, and untouched
    r = await client.post(f"/v1/notifications/{ids[0]}/read", headers=other.headers)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await client.post("/v1/notifications/ntf_missing/read", headers=creator.headers)).status_code == 404
    theirs = (await client.get("/v1/notifications", headers=other.headers)).json()["items"]
    assert [n["title"] for n in theirs] == ["title 9"]
    assert (await client.get("/v1/notifications")).status_code == 401
    bad = await client.get("/v1/notifications", headers=creator.headers, params={"unread": "maybe"})
    assert bad.status_code == 422


async def test_recorder_and_admin_sms_log(client, factory: Factory):
    op = await factory.operator()
    creator = await factory.user("creator")
    async with factory.maker() as session:
        await send_sms(session, creator.id, "13800000001", "hello 1")
        await session.flush()
        await asyncio.sleep(0.002)
        await send_sms(session, creator.id, "13800000002", "hello 2")
        assert await send_sms(session, creator.id, None, "no phone") is None
        await session.commit()
    r = await client.get("/v1/admin/sms", headers=op.headers, params={"phone": "13800000001"})
    assert r.status_code == 200, r.text
    [sms] = r.json()["items"]
    assert sms["text"] == "hello 1" and sms["status"] == "recorded" and sms["account_id"] == creator.id
    assert sms["sent_at"] is not None
    everything = (await client.get("/v1/admin/sms", headers=op.headers)).json()["items"]
    assert [s["text"] for s in everything][:2] == ["hello 2", "hello 1"]  # newest first
    assert (await client.get("/v1/admin/sms", headers=creator.headers)).status_code == 403
    # the recorder keeps them: the relay has nothing to send
    assert await send_queued_sms(factory.maker) == 0


@pytest.fixture
def gateway(monkeypatch):
    def use(url: str) -> None:
        monkeypatch.setattr(get_settings(), "sms_gateway_url", url)

    return use


async def test_http_gateway_sends_with_retries(client, factory: Factory, gateway):
    op = await factory.operator()
    creator = await factory.user("creator")
    with Receiver(fail_first=1, fail_status=503) as receiver:
        gateway(receiver.url)
        async with factory.maker() as session:
            await send_sms(session, creator.id, "13900000000", "验证码 1234")
            await session.commit()
        [queued] = (await client.get("/v1/admin/sms", headers=op.headers)).json()["items"]
        assert queued["status"] == "queued" and queued["sent_at"] is None

        assert await send_queued_sms(factory.maker) == 1  # 503: retried later
        [sms] = (await client.get("/v1/admin/sms", headers=op.headers)).json()["items"]
        assert sms["status"] == "queued" and sms["attempts"] == 1 and sms["last_error"] == "HTTP 503"
        assert await send_queued_sms(factory.maker) == 0  # back-off not over
        assert await send_queued_sms(factory.maker, now=real_now() + timedelta(seconds=3)) == 1
        assert await send_queued_sms(factory.maker, now=real_now() + timedelta(seconds=3600)) == 0
    assert [r["json"] for r in receiver.requests] == [{"phone": "13900000000", "text": "验证码 1234"}] * 2
    [sms] = (await client.get("/v1/admin/sms", headers=op.headers)).json()["items"]
    assert sms["status"] == "sent" and sms["attempts"] == 2 and sms["sent_at"] is not None


async def test_http_gateway_gives_up(client, factory: Factory, gateway, monkeypatch):
    monkeypatch.setattr(notifications, "SMS_MAX_ATTEMPTS", 2)
    op = await factory.operator()
    with Receiver(fail_first=100) as receiver:
        gateway(receiver.url)
        async with factory.maker() as session:
            await send_sms(session, None, "13900000001", "x")
            await session.commit()
        made = 0
        for seconds in (0, 5, 60, 600):
            made += await send_queued_sms(factory.maker, now=real_now() + timedelta(seconds=seconds))
    assert made == 2 and len(receiver.requests) == 2
    [sms] = (await client.get("/v1/admin/sms", headers=op.headers)).json()["items"]
    assert sms["status"] == "failed" and sms["attempts"] == 2 and sms["last_error"] == "HTTP 500"


async def test_relays_are_registered():
    from app.modules import PERIODIC

    jobs = {p.name: p for p in PERIODIC}
    assert jobs["sms-relay"].job is send_queued_sms and jobs["sms-relay"].interval == 1.0
    assert jobs["webhook-relay"].interval == 1.0


@postgres_only
async def test_racing_sms_relays_send_each_once(committed_client, committed_factory, committed_app, gateway, monkeypatch):
    monkeypatch.setattr(notifications, "SMS_BATCH", 2)
    maker = committed_app.state.sessionmaker
    op = await committed_factory.operator()
    with Receiver() as receiver:
        gateway(receiver.url)
        async with maker() as session:
            for n in range(9):
                await send_sms(session, None, f"1390000{n:04d}", f"text {n}")
            await session.commit()
        total = sum(await asyncio.gather(*(send_queued_sms(maker) for _ in range(3))))
        total += sum(await asyncio.gather(*(send_queued_sms(maker) for _ in range(3))))
    assert total == 9
    assert sorted(r["json"]["text"] for r in receiver.requests) == sorted(f"text {n}" for n in range(9))
    r = await committed_client.get("/v1/admin/sms", headers=op.headers, params={"limit": 100})
    assert {(s["status"], s["attempts"]) for s in r.json()["items"]} == {("sent", 1)}


async def test_a_crashed_relay_lease_expires_then_the_sms_is_sent_or_given_up(client, factory: Factory, gateway, monkeypatch):
    op = await factory.operator()
    with Receiver() as receiver:
        gateway(receiver.url)
        async with factory.maker() as session:
            await send_sms(session, None, "13900000002", "lease 1")
            await session.commit()
        start = real_now()
        assert len(await notifications._claim_sms(factory.maker, start)) == 1  # claimed, then the relay "dies"
        assert await send_queued_sms(factory.maker, now=start + timedelta(seconds=5)) == 0  # leased
        later = start + timedelta(seconds=notifications.SMS_LEASE_SECONDS + 1)
        assert await send_queued_sms(factory.maker, now=later) == 1
        [sms] = (await client.get("/v1/admin/sms", headers=op.headers)).json()["items"]
        assert sms["status"] == "sent" and sms["attempts"] == 2 and sms["last_error"] is None
        assert len(receiver.requests) == 1

        monkeypatch.setattr(notifications, "SMS_MAX_ATTEMPTS", 1)
        async with factory.maker() as session:
            await send_sms(session, None, "13900000003", "lease 2")
            await session.commit()
        assert len(await notifications._claim_sms(factory.maker, start)) == 1
        assert await send_queued_sms(factory.maker, now=later) == 0  # its one attempt was lost
    [given_up] = (await client.get("/v1/admin/sms", headers=op.headers, params={"phone": "13900000003"})).json()["items"]
    assert given_up["status"] == "failed" and given_up["attempts"] == 1
    assert given_up["last_error"].startswith("lease expired")
    assert len(receiver.requests) == 1
