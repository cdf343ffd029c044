"""Calendar arithmetic of the business (Asia/Shanghai) and real time. Pure: no database.

Business time (real time plus the test clock's offset) is `app.state.clock.now(session)`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def real_now() -> datetime:
    return datetime.now(UTC)


def local_date(moment: datetime) -> date:
    """The Asia/Shanghai calendar day of an instant."""
    return moment.astimezone(SHANGHAI).date()


def local_midnight(day: date) -> datetime:
    """00:00 Asia/Shanghai of a calendar day, as a UTC instant."""
    return datetime.combine(day, time(0, 0), tzinfo=SHANGHAI).astimezone(UTC)


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 Asia/Shanghai of the natural week containing `moment` (UTC instant)."""
    day = local_date(moment)
    return local_midnight(day - timedelta(days=day.weekday()))


def next_local_midnight(moment: datetime) -> datetime:
    return local_midnight(local_date(moment) + timedelta(days=1))


def month_of(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m")
