"""The cluster's databases as a restore sees them: the records restores leave on them, their names.

Pure. A restore keeps the data it replaced (and a restore it rejected) under a name of its own
(`kept_name`) with a record in that database's comment: what it holds, of which backup, until
when (`due_for_drop`). `parse_databases` reads them back from DATABASES_SQL's output; test
restores and restores work in scratch databases (`scratch_name`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cerniq_ops.clock import parse_time

DATABASES_SQL = (
    "SELECT coalesce(json_agg(json_build_object('name', datname, 'allow', datallowconn, "
    "'comment', shobj_description(oid, 'pg_database')) ORDER BY datname), '[]')::jsonb "
    "FROM pg_database"  # jsonb: printed on one line
)
RECORD_KINDS = ("previous", "rejected")  # the live data before a restore / a rejected restore


@dataclass(frozen=True)
class Database:
    """A database of the cluster as the restore sees it; RECORD is its cerniq comment."""

    name: str
    allow: bool
    record: dict[str, Any] | None = None

    def holds_data_of(self, db_name: str) -> bool:
        """A database a restore of DB_NAME set aside (the data before it, or a rejected one)."""
        return bool(self.record) and self.record.get("of") == db_name

    @property
    def unconfirmed(self) -> bool:
        """Swapped out by a restore that died before confirming the swap."""
        return (self.record or {}).get("state") == "swapped"


def parse_databases(text: str) -> list[Database]:
    result = []
    for row in json.loads(text.strip().splitlines()[-1] if text.strip() else "[]"):
        record = None
        try:
            parsed = json.loads(row.get("comment") or "null")
            if isinstance(parsed, dict) and parsed.get("cerniq") in RECORD_KINDS:
                record = parsed
        except ValueError:
            pass
        result.append(Database(str(row["name"]), bool(row["allow"]), record))
    return result


def kept_name(db_name: str, kind: str, at: datetime) -> str:
    """`cerniq_previous_20261128t231500z`: where a restore keeps the data it replaced."""
    return f"{db_name}_{kind}_{at.astimezone(UTC).strftime('%Y%m%dt%H%M%Sz')}"[:63]


def due_for_drop(db: Database, now: datetime) -> bool:
    """A kept database whose retention delay has passed (never one a restore still needs)."""
    r = db.record or {}
    return (
        r.get("state") == "kept"
        and bool(r.get("drop_after"))
        and (parse_time(r["drop_after"]) <= now)
    )


def scratch_name(prefix: str, purpose: str, token: str) -> str:
    """A scratch database name: PREFIX + PURPOSE + TOKEN, lower case, within 63 bytes."""
    name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}{purpose}_{token}".lower())
    return name[:63]
