"""The incentives' calendar: months (Asia/Shanghai), a voucher's expiry, working days."""

from __future__ import annotations

from collections.abc import Set
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.db.repositories import incentives as repo
from app.state import clock

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
VOUCHER_DAYS = 30
NOTICE_WORKING_DAYS = 3


def parse_month(month: str) -> tuple[int, int]:
    try:
        year, mon = int(month[:4]), int(month[5:7])
        if len(month) != 7 or month[4] != "-" or not 1 <= mon <= 12 or year < 1:
            raise ValueError
    except ValueError:
        raise ValidationFailed("month must be YYYY-MM", loc=["path", "month"]) from None
    return year, mon


def shift_month(month: str, delta: int) -> str:
    year, mon = parse_month(month)
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_start(month: str) -> datetime:
    """00:00 Asia/Shanghai of the month's first day, as a UTC instant."""
    year, mon = parse_month(month)
    return clock.local_midnight(date(year, mon, 1))


def voucher_expiry(published_at: datetime) -> datetime:
    """The earlier of 30 days after publication and the 10th of the month following the
    publication's month, 00:00 Asia/Shanghai."""
    local = clock.local_date(published_at)
    following = shift_month(f"{local.year:04d}-{local.month:02d}", 1)
    tenth = clock.local_midnight(date(int(following[:4]), int(following[5:]), 10))
    return min(published_at + timedelta(days=VOUCHER_DAYS), tenth)


async def working_days_between(session: AsyncSession, after: date, until: date, *, enough: int) -> int:
    """Working days (Mon–Fri minus holidays) in (after, until], counted up to `enough`."""
    if until <= after:
        return 0
    return count_working_days(await repo.holidays_between(session, after, until), after, until, enough=enough)


def count_working_days(holidays: Set[date], after: date, until: date, *, enough: int) -> int:
    """Working days (Mon–Fri minus `holidays`) in (after, until], counted up to `enough`."""
    count, day = 0, after
    while day < until and count < enough:
        day += timedelta(days=1)
        count += day.weekday() < 5 and day not in holidays
    return count
