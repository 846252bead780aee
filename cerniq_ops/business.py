"""Business time (seed 4.2 SLAs): working days and hours in the team's time zone, public
holidays from the `holidays` library. Pure: the clock is always an argument."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from cerniq_ops.clock import parse_iso
from cerniq_ops.errors import BadInput

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _clock(text: str) -> time:
    try:
        return time.fromisoformat(str(text))
    except ValueError:
        raise BadInput(f"team.yml business hours: {text!r} is not HH:MM") from None


def day_hours(t: dict) -> float:
    """Length of one business day in hours (08:00-17:30 -> 9.5)."""
    b = t["business"]
    start, end = _clock(b["start"]), _clock(b["end"])
    return (end.hour * 60 + end.minute - start.hour * 60 - start.minute) / 60


@lru_cache(maxsize=32)
def _holidays(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year).keys())
    except NotImplementedError:
        raise BadInput(f"team.yml holidays_country {country!r} is unknown to `holidays`") from None


def is_business_day(t: dict, day: date) -> bool:
    b = t["business"]
    if WEEKDAYS[day.weekday()] not in b["days"]:
        return False
    country = b.get("holidays_country")
    return not (country and day in _holidays(country, day.year))


def elapsed(t: dict, start: datetime, end: datetime) -> timedelta:
    """Business time between START and END (aware datetimes): the overlap with each business
    day's working hours in the team's time zone (DST-safe: each day's hours are local)."""
    if end <= start:
        return timedelta(0)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    b = t["business"]
    zone = ZoneInfo(b["time_zone"])
    open_at, close_at = _clock(b["start"]), _clock(b["end"])
    total = timedelta(0)
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    while day <= last:
        if is_business_day(t, day):
            lo = datetime.combine(day, open_at, zone).astimezone(UTC)
            hi = datetime.combine(day, close_at, zone).astimezone(UTC)
            overlap = min(hi, end) - max(lo, start)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def parse_at(text: str | None, zone_name: str, now: datetime | None = None) -> datetime:
    """--at / --now: ISO 8601 ('2026-03-30T10:00+03:00', '...Z'); without an offset it is the
    team's local time; None means now. BadInput for anything else."""
    if not text:
        return now or datetime.now(UTC).replace(microsecond=0)
    try:
        at = parse_iso(text)
    except ValueError:
        raise BadInput(
            f"cannot read the time {text!r}; use ISO 8601, e.g. 2026-03-30T09:00"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(zone_name))
