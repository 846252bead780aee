"""Time stamps as our records keep them (lock, journal, audit log, backups, incidents, hotfixes):
UTC to the second, `2026-12-03T06:07:42Z`; and ISO 8601 as people and GitHub write it."""

from __future__ import annotations

from datetime import UTC, datetime

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_utc() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """A record's stamp (TIME_FORMAT, exactly) as an aware UTC datetime; ValueError otherwise."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def parse_iso(text: str) -> datetime:
    """ISO 8601 with an offset or `Z` (GitHub's `2026-12-01T10:00:00Z`); ValueError otherwise."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
