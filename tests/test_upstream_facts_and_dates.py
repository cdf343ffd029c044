"""security.md, "Facts from upstream are checked" and "A date is a `YYYY-MM-DD` string, never a
number": a live session's end is checked as it will be stored (a later push that keeps the
recorded end cannot move the start past it);
a date field takes exactly its `YYYY-MM-DD` text. Each refusal is a 422 that changes nothing."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.db.models.incentives import Holiday, Redemption
from app.db.repositories import ingest as ingest_repo
from app.domain.incentives.schemas import HolidaysIn, RedemptionCreate
from app.domain.ingest import LiveSessionIn
from tests.conftest import Factory
from tests.test_incentives import SH, published_world

URL = "/v1/ingest/live-sessions"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _refused(r, *loc) -> dict:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "validation_failed", body
    assert any(e["loc"][: len(loc)] == list(loc) for e in body["errors"]), body["errors"]
    return body


async def _stored(db, external_id: str):
    async with db() as session:
        return await ingest_repo.lock_live_session(session, external_id)


async def _session_world(factory: Factory):
    platform = await factory.user("platform")
    creator = await factory.user("creator")
    now = (await factory.now()).replace(microsecond=0)
    return platform, creator, now


def _push(external_id: str, host_id: str, started: datetime, ended: datetime | None = None, **extra) -> dict:
    body = {"external_id": external_id, "host_id": host_id, "started_at": iso(started), "room_url": "https://live.example/r"}
    if ended is not None:
        body["ended_at"] = iso(ended)
    return {**body, **extra}


# -- bug 1: the stored end is checked against the pushed start ---------------------------------
async def test_a_later_start_past_the_recorded_end_is_refused_and_changes_nothing(client, factory: Factory, db):
    platform, creator, now = await _session_world(factory)
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    first = _push("ls-merged", creator.id, start, end, peak_viewers=10)
    r = await client.post(URL, headers=platform.headers, json=first)
    assert r.status_code == 201, r.text
    # a second push without `ended_at` would keep the recorded end, an hour before its new start
    late = _push("ls-merged", creator.id, now - timedelta(minutes=1), peak_viewers=99, room_url="https://live.example/moved")
    body = _refused(await client.post(URL, headers=platform.headers, json=late), "body", "started_at")
    assert "ended_at" in body["errors"][0]["msg"], body
    stored = await _stored(db, "ls-merged")
    assert stored is not None
    assert (stored.started_at, stored.ended_at) == (start, end)
    assert stored.peak_viewers == 10 and stored.room_url == "https://live.example/r"
    # a later start still before the recorded end is a fact, and the end is kept
    moved = _push("ls-merged", creator.id, start + timedelta(minutes=30))
    r = await client.post(URL, headers=platform.headers, json=moved)
    assert r.status_code == 200, r.text
    assert r.json()["ended_at"] == iso(end)
    stored = await _stored(db, "ls-merged")
    assert (stored.started_at, stored.ended_at) == (start + timedelta(minutes=30), end)


async def test_a_start_equal_to_the_recorded_end_is_accepted(client, factory: Factory, db):
    platform, creator, now = await _session_world(factory)
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    assert (await client.post(URL, headers=platform.headers, json=_push("ls-edge", creator.id, start, end))).status_code == 201
    r = await client.post(URL, headers=platform.headers, json=_push("ls-edge", creator.id, end))
    assert r.status_code == 200, r.text
    stored = await _stored(db, "ls-edge")
    assert (stored.started_at, stored.ended_at) == (end, end)


# text that is not a date's YYYY-MM-DD: numbers, datetimes, other layouts, days not on the calendar
NOT_DATES = [
    "1767571200",
    "20260201",
    "2026-02-01T00:00:00Z",
    "2026-02-01 00:00",
    "2026-2-1",
    "02/01/2026",
    "2026/02/01",
    " 2026-02-01",
    "2026-02-01 ",
    "2026-02-30",
    "2026-13-01",
    "+2026-02-01",
    "２０２６-02-01",
    "",
    "today",
    "2026-W05-1",
]


async def _holidays(db) -> list[date]:
    async with db() as session:
        return list(await session.scalars(select(Holiday.day).order_by(Holiday.day)))


@pytest.mark.parametrize("value", NOT_DATES)
async def test_a_holiday_is_only_its_yyyy_mm_dd_text(client, factory: Factory, db, value):
    op = await factory.operator()
    ok = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": ["2027-01-01"]})
    assert ok.status_code == 200 and ok.json()["dates"] == ["2027-01-01"], ok.text
    r = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": ["2027-02-01", value]})
    _refused(r, "body", "dates")
    assert await _holidays(db) == [date(2027, 1, 1)]


async def test_the_reproduced_holiday_push_is_refused(client, factory: Factory, db):
    op = await factory.operator()
    r = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": ["1767571200", "2026-02-01T00:00:00Z"]})
    _refused(r, "body", "dates")
    assert await _holidays(db) == []
    ok = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": ["2026-02-01", "2026-01-05"]})
    assert ok.status_code == 200 and ok.json()["dates"] == ["2026-01-05", "2026-02-01"]
    assert await _holidays(db) == [date(2026, 1, 5), date(2026, 2, 1)]


async def test_a_redemption_use_date_is_only_its_yyyy_mm_dd_text(client, factory: Factory, db):
    w = await published_world(client, factory)
    use = ((await factory.now()) + timedelta(days=10)).astimezone(SH).date()
    url = f"/v1/vouchers/{w.v2['id']}/redemptions"
    before = {v["id"]: v["remaining_fen"] for v in (await client.get("/v1/vouchers", headers=w.provider.headers)).json()["items"]}
    midnight = datetime(use.year, use.month, use.day, tzinfo=SH)
    for value in (str(int(midnight.timestamp())), iso(midnight), f"{use}T00:00:00Z", use.strftime("%Y%m%d"), "2026-02-30"):
        r = await client.post(
            url, headers=w.provider.headers, json={"merchant_id": w.m[2].id, "amount_fen": 100, "use_date": value}
        )
        _refused(r, "body", "use_date")
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Redemption)) == 0
    after = {v["id"]: v["remaining_fen"] for v in (await client.get("/v1/vouchers", headers=w.provider.headers)).json()["items"]}
    assert after == before
    r = await client.post(
        url, headers=w.provider.headers, json={"merchant_id": w.m[2].id, "amount_fen": 100, "use_date": str(use)}
    )
    assert r.status_code == 201 and r.json()["use_date"] == str(use), r.text


def test_every_schema_with_a_date_takes_its_text_and_a_python_date():
    """The checker sits on every Strict model's date fields (a list of them, a single one); a
    date built in Python still passes, a datetime does not."""
    assert HolidaysIn.model_validate({"dates": ["2026-12-25", "2026-01-01"]}).dates == [date(2026, 1, 1), date(2026, 12, 25)]
    assert HolidaysIn.model_validate({"dates": [date(2026, 12, 25)]}).dates == [date(2026, 12, 25)]
    body = {"merchant_id": "m", "amount_fen": 1}
    assert RedemptionCreate.model_validate({**body, "use_date": "2028-02-29"}).use_date == date(2028, 2, 29)
    assert RedemptionCreate.model_validate({**body, "use_date": date(2026, 3, 1)}).use_date == date(2026, 3, 1)
    for value in ("2026-02-29", "1767571200", datetime(2026, 3, 1), 20260301):
        with pytest.raises(ValidationError) as refused:
            RedemptionCreate.model_validate({**body, "use_date": value})
        assert [e["loc"] for e in refused.value.errors()] == [("use_date",)]


@pytest.mark.parametrize(
    "started",
    ["2026-11-20T10:00:00Z", "2026-11-20T18:00:00+08:00", "2026-11-20T10:00:00.123456Z", "2026-11-20 10:00:00Z"],
)
def test_datetime_fields_keep_taking_their_iso_text(started):
    """Only dates became exact: a datetime field still takes the ISO texts it took (an offset is
    still required, a number still refused)."""
    body = {"external_id": "x", "host_id": "h", "room_url": "https://live.example/r"}
    assert LiveSessionIn.model_validate({**body, "started_at": started}).started_at.tzinfo is not None
    for value in (0, 1767571200, "2026-11-20T10:00:00", "2026-11-20"):
        with pytest.raises(ValidationError):
            LiveSessionIn.model_validate({**body, "started_at": value})
