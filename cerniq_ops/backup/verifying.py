"""`invoke backup.verify`: prove a backup restorable, and record the outcome either way.

Its checksum and size against the manifest, `pg_restore --list` reading the archive end to end,
and a test restore into a scratch database whose row counts must equal the manifest's (the
scratch database is always dropped); `<id>.verify.json` records the outcome, ok or not.
`verify_backup(ctx, manifest, restore=...)` is what other procedures call; restore runs
`find_backup` and the first two checks as its own steps.
"""

from __future__ import annotations

import functools
import json
import secrets
from typing import Any

from cerniq_ops import hosts
from cerniq_ops.audit import actor
from cerniq_ops.backup.cluster import scratch_name
from cerniq_ops.backup.commands import from_file_argv, pg_restore_list_argv
from cerniq_ops.backup.manifest import compare_counts, paths
from cerniq_ops.backup.remote import (
    LONG,
    _counts,
    _db_host,
    _drop,
    _last_line,
    _sha256,
    list_on_host,
    restore_into,
)
from cerniq_ops.clock import now_utc
from cerniq_ops.errors import BadInput, CerniqError, StepFailed
from cerniq_ops.procedure import Context, Report, Step, run, step


def table_data_entries(listing: str) -> int:
    """How many TABLE DATA entries a `pg_restore --list` table of contents has."""
    return sum(1 for line in listing.splitlines() if " TABLE DATA " in line)


def check_checksum_of(ctx: Context, manifest: dict[str, Any], checks: dict[str, Any]) -> str:
    dump = paths(ctx.settings.backup_dir, manifest["id"])["dump"]
    sha, size = _sha256(ctx, dump)
    checks["sha256"] = sha
    if sha != manifest["sha256"] or size != manifest["size"]:
        raise StepFailed(
            f"backup {manifest['id']} is corrupt: {dump} has sha256 {sha[:16]}... and "
            f"{size} bytes, "
            f"its manifest recorded {manifest['sha256'][:16]}... and {manifest['size']} bytes; "
            "do not restore it"
        )
    return f"sha256 {sha[:16]}... matches ({size} bytes)"


def check_archive_of(ctx: Context, manifest: dict[str, Any], checks: dict[str, Any]) -> str:
    dump = paths(ctx.settings.backup_dir, manifest["id"])["dump"]
    argv = from_file_argv(dump, pg_restore_list_argv(ctx.settings))
    ok, out, err = hosts.sh(_db_host(ctx), argv, check=False, timeout=LONG)
    if not ok:
        raise StepFailed(
            f"backup {manifest['id']}: pg_restore cannot read its archive: {_last_line(err)}"
        )
    entries = sum(1 for line in out.splitlines() if line and not line.startswith(";"))
    data = table_data_entries(out)
    tables = len(manifest["row_counts"])
    if data < tables:
        raise StepFailed(
            f"backup {manifest['id']}: the archive has data for {data} tables, "
            f"the manifest counted {tables}"
        )
    checks["entries"] = entries
    return f"pg_restore --list: {entries} entries, data for {data} tables"


def test_restore_of(ctx: Context, manifest: dict[str, Any], checks: dict[str, Any]) -> str:
    """Restore into a scratch database, compare every table's rows; always drop it."""
    s = ctx.settings
    scratch = scratch_name(s.backup_scratch_prefix, "verify", secrets.token_hex(4))
    try:
        restore_into(ctx, manifest, scratch)
        problems = compare_counts(manifest["row_counts"], _counts(ctx, scratch))
    finally:
        _drop(ctx, scratch)
    if problems:
        raise StepFailed(
            f"backup {manifest['id']}: restored rows differ from the dump's in {len(problems)} "
            f"table(s): {'; '.join(problems[:3])}"
        )
    rows = sum(manifest["row_counts"].values())
    tables = len(manifest["row_counts"])
    checks["restored_tables"] = tables
    return f"restored into {scratch} (dropped): {tables} tables, {rows} rows match"


def write_verification(
    ctx: Context, manifest: dict[str, Any], checks: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """`<id>.verify.json`: ok or not, when, by whom, of which sha256, how deep (level)."""
    record = {
        "id": manifest["id"],
        "ok": error is None,
        "level": "restore" if "restored_tables" in checks else "archive",
        "verified_at": now_utc(),
        "verified_by": actor(),
        "sha256": checks.get("sha256"),
        "checks": checks,
        "error": error,
    }
    path = paths(ctx.settings.backup_dir, manifest["id"])["verify"]
    hosts.write_file(_db_host(ctx), path, json.dumps(record, indent=2, sort_keys=True), "600")
    return record


def verify_backup(ctx: Context, manifest: dict[str, Any], *, restore: bool) -> str:
    """For other procedures (deploy's backups): checksum and `pg_restore --list`, and with
    RESTORE a test restore; the outcome recorded either way. StepFailed when it fails."""
    checks: dict[str, Any] = {}
    parts = []
    try:
        parts.append(check_checksum_of(ctx, manifest, checks))
        parts.append(check_archive_of(ctx, manifest, checks))
        if restore:
            parts.append(test_restore_of(ctx, manifest, checks))
    except CerniqError as exc:
        write_verification(ctx, manifest, checks, str(exc))
        raise
    record = write_verification(ctx, manifest, checks, None)
    return f"verified ({record['level']}): " + "; ".join(parts)


def _records_error(fn: Step) -> Step:
    """Keep a check's failure in ctx.facts["error"], for the verification record."""

    @functools.wraps(fn)
    def wrapper(ctx: Context) -> str | None:
        try:
            return fn(ctx)
        except CerniqError as exc:
            ctx.facts["error"] = str(exc)
            raise

    return wrapper


@step(audited=False)
def find_backup(ctx: Context) -> str:
    """The backup named by --id (default: the newest of this environment)."""
    wanted = ctx.options.get("id")
    backups = list_on_host(ctx).backups
    where = f"{ctx.settings.backup_dir} on {ctx.settings.db_host.name}"
    if wanted:
        found = next((b for b in backups if b.id == wanted), None)
        if found is None:
            raise BadInput(
                f"no backup '{wanted}' in {where}; see `invoke backup.list --env {ctx.env}`"
            )
    else:
        found = next((b for b in backups if b.manifest.get("env") == ctx.env), None)
        if found is None:
            raise BadInput(
                f"no backup of {ctx.env} in {where}; run `invoke backup.create --env {ctx.env}`"
            )
    ctx.facts["backup"] = found.manifest
    ctx.facts["backup_id"] = found.id
    ctx.facts.setdefault("checks", {})
    if found.dump_size is None:
        ctx.facts["error"] = f"backup {found.id}: its dump {found.manifest['file']} is missing"
        raise StepFailed(ctx.facts["error"])
    return f"{found.id} ({found.manifest['label']}, {found.manifest['size']} bytes)"


@step()
@_records_error
def check_checksum(ctx: Context) -> str:
    return check_checksum_of(ctx, ctx.facts["backup"], ctx.facts["checks"])


@step()
@_records_error
def check_archive(ctx: Context) -> str:
    return check_archive_of(ctx, ctx.facts["backup"], ctx.facts["checks"])


@step()
@_records_error
def test_restore(ctx: Context) -> str:
    return test_restore_of(ctx, ctx.facts["backup"], ctx.facts["checks"])


@step()
def record_verification(ctx: Context) -> str:
    record = write_verification(ctx, ctx.facts["backup"], ctx.facts["checks"], None)
    ctx.facts["verification"] = record
    return f"{ctx.facts['backup_id']} verified"


def record_failed_verification(ctx: Context) -> str | None:
    """on_failure hook: a failed verification is recorded too (prune and audits read it)."""
    if "backup" not in ctx.facts or ctx.state is None:
        return None
    error = ctx.facts.get("error") or "verification failed"
    ctx.facts["verification"] = write_verification(
        ctx, ctx.facts["backup"], ctx.facts.get("checks", {}), error
    )
    return f"recorded: {ctx.facts['backup_id']} failed verification"


VERIFY = (find_backup, check_checksum, check_archive, test_restore, record_verification)


def verify(ctx: Context) -> Report:
    """Verification reads backups and uses a scratch database: it does not take the lock."""
    ctx.locking = False
    return run(VERIFY, ctx, on_failure=(record_failed_verification,))
