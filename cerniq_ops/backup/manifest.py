"""A backup's files in `backup_dir` and what they record: ids, paths, the manifest, the listing.

Pure. Ids (`backup_id`, checked by `check_id`) become file names on the db host; the manifest
(`build_manifest`) is what the dump holds and how to prove it; `parse_listing` reads what the
listing script prints into BackupInfo (a backup with its verification and dump size) and a
Listing (with the files of runs that died before their manifest).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cerniq_ops.clock import parse_time
from cerniq_ops.errors import BadInput
from cerniq_ops.settings import Settings

LABELS = ("pre-deploy", "pre-migration", "manual", "nightly")  # nightly: ci.workflows
INTERNAL_LABELS = ("pre-restore",)
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[a-z]+-[a-z][a-z0-9-]*\Z", re.ASCII)  # \Z: no newline
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"
VERIFY_SUFFIX = ".verify.json"
PARTIAL_SUFFIX = ".dump.partial"


def backup_id(now: datetime, env: str, label: str, taken: Iterable[str] = ()) -> str:
    """`20261128T231500Z-production-pre-deploy`; `-2`, `-3`... when that id is already taken."""
    if label not in LABELS + INTERNAL_LABELS:
        raise BadInput(f"unknown backup label '{label}'; choose one of: {', '.join(LABELS)}")
    base = f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{env}-{label}"
    taken = set(taken)
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def check_id(backup_id_: str) -> str:
    """The id itself, or BadInput: ids become file names on the db host."""
    if not ID_PATTERN.match(backup_id_ or "") or "\n" in backup_id_:
        raise BadInput(
            f"invalid backup id '{backup_id_}'; ids look like 20261128T231500Z-production-manual "
            "(see `invoke backup.list`)"
        )
    return backup_id_


def id_env(backup_id_: str) -> str | None:
    """The environment an id names (`20261128T231500Z-production-manual` -> production)."""
    return backup_id_.split("-")[1] if ID_PATTERN.match(backup_id_) else None


def paths(backup_dir: str, backup_id_: str) -> dict[str, str]:
    base = f"{backup_dir.rstrip('/')}/{backup_id_}"
    return {
        "dump": base + DUMP_SUFFIX,
        "manifest": base + MANIFEST_SUFFIX,
        "verify": base + VERIFY_SUFFIX,
        "partial": base + PARTIAL_SUFFIX,
    }


def build_manifest(
    *,
    backup_id_: str,
    label: str,
    s: Settings,
    version: str | None,
    size: int,
    sha256: str,
    started: str,
    finished: str,
    server_version: str,
    pg_dump_version: str,
    database: dict[str, str],
    row_counts: dict[str, int],
    who: str,
) -> dict[str, Any]:
    return {
        "id": backup_id_,
        "label": label,
        "env": s.env,
        "database": s.db_name,
        "db_host": s.db_host.name,
        "database_properties": database,
        "version": version,
        "file": paths(s.backup_dir, backup_id_)["dump"],
        "format": "custom",
        "size": size,
        "sha256": sha256,
        "started": started,
        "finished": finished,
        "pg_version": server_version,
        "pg_dump_version": pg_dump_version,
        "row_counts": row_counts,
        "created_by": who,
    }


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Every difference between two {table: rows} maps, one line each (empty: identical)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"{table}: missing after restore ({expected[table]} rows expected)")
        elif table not in expected:
            problems.append(f"{table}: not in the backup's counts ({actual[table]} rows)")
        elif expected[table] != actual[table]:
            problems.append(f"{table}: {actual[table]} rows restored, {expected[table]} dumped")
    return problems


@dataclass
class BackupInfo:
    """One backup as found on the db host: its manifest, verification and dump file."""

    manifest: dict[str, Any]
    verification: dict[str, Any] | None = None
    dump_size: int | None = None

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def finished(self) -> datetime:
        return parse_time(self.manifest["finished"])

    @property
    def intact(self) -> bool:
        """Its dump is there with the size the manifest recorded (not deleted, not truncated)."""
        return self.dump_size is not None and self.dump_size == self.manifest.get("size")

    @property
    def verified(self) -> bool:
        """Verified ok, of this very file (same sha256), and the file is still there whole."""
        v = self.verification or {}
        return self.intact and bool(v.get("ok")) and v.get("sha256") == self.manifest.get("sha256")

    @property
    def state(self) -> str:
        if self.dump_size is None:
            return "dump missing"
        if self.dump_size != self.manifest.get("size"):
            return "size differs"
        if self.verification is None:
            return "not verified"
        return "verified" if self.verified else "verify failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.manifest.items() if k != "row_counts"},
            "tables": len(self.manifest.get("row_counts", {})),
            "state": self.state,
            "verified_at": (self.verification or {}).get("verified_at"),
            "verified_level": (self.verification or {}).get("level"),
        }


@dataclass
class Listing:
    """What backup_dir holds: backups (newest first), and files no manifest accounts for:
    `.partial` dumps (a dump in progress or killed) and orphan dumps (a run died between the
    dump and its manifest), each {file name: mtime epoch}."""

    backups: list[BackupInfo]
    partials: dict[str, int]
    orphans: dict[str, int]

    def leftovers(self, env: str) -> list[str]:
        """The partial and orphan files whose id names ENV (what prune removes), sorted."""
        names = [*self.partials, *self.orphans]
        return sorted(n for n in names if id_env(n.split(".", 1)[0]) == env)


LISTING_SCRIPT = (
    'cd "$0" 2>/dev/null || exit 0; '
    "for f in *" + MANIFEST_SUFFIX + '; do [ -f "$f" ] || continue; '
    "printf 'M\\t%s\\t' \"$f\"; tr -d '\\n' < \"$f\"; printf '\\n'; done; "
    "for f in *" + VERIFY_SUFFIX + '; do [ -f "$f" ] || continue; '
    "printf 'V\\t%s\\t' \"$f\"; tr -d '\\n' < \"$f\"; printf '\\n'; done; "
    "for f in *" + DUMP_SUFFIX + " *" + PARTIAL_SUFFIX + '; do [ -f "$f" ] || continue; '
    'printf \'D\\t%s\\t%s\\n\' "$f" "$(stat -c \'%s %Y\' "$f")"; done'
)


def listing_argv(backup_dir: str) -> list[str]:
    return ["sh", "-c", LISTING_SCRIPT, backup_dir]


def parse_listing(text: str) -> Listing:
    """The listing script's output as a Listing. Files that are not ours (not named like an
    id), or whose manifest does not parse, are skipped."""
    manifests: dict[str, dict[str, Any]] = {}
    verifications: dict[str, dict[str, Any]] = {}
    dumps: dict[str, tuple[int, int]] = {}
    partials: dict[str, int] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        name, _, payload = rest.partition("\t")
        try:
            if kind == "M" and name.endswith(MANIFEST_SUFFIX):
                manifest = json.loads(payload)
                if manifest.get("id") == name.removesuffix(MANIFEST_SUFFIX):
                    parse_time(manifest["finished"])
                    manifests[manifest["id"]] = manifest
            elif kind == "V" and name.endswith(VERIFY_SUFFIX):
                verifications[name.removesuffix(VERIFY_SUFFIX)] = json.loads(payload)
            elif kind == "D" and name.endswith(PARTIAL_SUFFIX):
                if ID_PATTERN.match(name.removesuffix(PARTIAL_SUFFIX)):
                    partials[name] = int(payload.split()[1])
            elif kind == "D" and name.endswith(DUMP_SUFFIX):
                size, mtime = payload.split()
                dumps[name.removesuffix(DUMP_SUFFIX)] = (int(size), int(mtime))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
    backups = [
        BackupInfo(m, verifications.get(i), dumps[i][0] if i in dumps else None)
        for i, m in manifests.items()
    ]
    backups.sort(key=lambda b: (b.manifest["finished"], b.id), reverse=True)
    orphans = {
        i + DUMP_SUFFIX: mtime
        for i, (_, mtime) in dumps.items()
        if i not in manifests and ID_PATTERN.match(i)
    }
    return Listing(backups, partials, orphans)
