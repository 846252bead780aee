"""Which backups retention lets go, and whether a verified backup is recent enough. Pure.

Prune keeps the newest `keep_last`, everything younger than `keep_days` and always the newest
verified backup; `verified_freshness` is what `backup.list` reports and audits check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cerniq_ops.backup.manifest import BackupInfo
from cerniq_ops.errors import BadInput


@dataclass(frozen=True)
class Retention:
    """Keep the newest KEEP_LAST, everything younger than KEEP_DAYS, and the newest verified."""

    keep_last: int
    keep_days: float

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise BadInput(f"retention must keep at least the newest backup (got {self.keep_last})")
        if self.keep_days < 0:
            raise BadInput(f"retention days cannot be negative (got {self.keep_days})")


@dataclass(frozen=True)
class Candidate:
    id: str
    finished: datetime
    verified: bool


def select_for_deletion(
    candidates: Sequence[Candidate], policy: Retention, now: datetime
) -> list[str]:
    """The ids retention lets go, oldest first. Never the newest verified one."""
    ordered = sorted(candidates, key=lambda c: (c.finished, c.id), reverse=True)
    keep = {c.id for c in ordered[: policy.keep_last]}
    cutoff = now - timedelta(days=policy.keep_days)
    keep |= {c.id for c in ordered if c.finished >= cutoff}
    newest_verified = next((c for c in ordered if c.verified), None)
    if newest_verified:
        keep.add(newest_verified.id)
    return [c.id for c in reversed(ordered) if c.id not in keep]


def verified_freshness(
    backups: Sequence[BackupInfo], now: datetime, max_age_hours: float
) -> dict[str, Any]:
    """The newest verified backup, how old its data is and whether that is within MAX_AGE_HOURS.

    What an audit checks: a backup proven restorable whose data is recent enough.
    """
    newest = next((b for b in backups if b.verified), None)
    if newest is None:
        return {"newest_verified": None, "age_hours": None, "fresh": False}
    age = (now - newest.finished).total_seconds() / 3600
    return {"newest_verified": newest.id, "age_hours": round(age, 2), "fresh": age <= max_age_hours}
