"""`invoke backup.restore`: restore a backup into a new database, check it, swap it in.

The live database is never restored into: the backup goes into a new database whose row counts
must equal the manifest's, which is swapped in by renaming; the old one is kept (renamed, its
record in its comment) until the app is healthy on the restored one and a retention delay has
passed (docs/runbooks/backups.md). A run that died is converged from what it left
(`converge_earlier_restore`); whatever fails, `leave_one_live_database` leaves the app on one
complete database that accepts connections.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cerniq_ops.backup.cluster import kept_name, scratch_name
from cerniq_ops.backup.commands import (
    allow_connections_sql,
    comment_database_sql,
    swap_databases_statements,
)
from cerniq_ops.backup.creating import create_backup
from cerniq_ops.backup.manifest import compare_counts
from cerniq_ops.backup.remote import (
    _counts,
    _current_version,
    _drop,
    _psql,
    databases,
    restore_into,
)
from cerniq_ops.backup.verifying import check_archive, check_checksum, find_backup
from cerniq_ops.clients.http import wait_healthy
from cerniq_ops.clock import TIME_FORMAT, now_utc
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, Report, run, step
from cerniq_ops.settings import Settings


@step()
def refuse_other_environment(ctx: Context) -> str:
    origin = ctx.facts["backup"].get("env")
    if origin == ctx.env:
        return f"backup of {origin}"
    if not ctx.options.get("allow_other_env"):
        raise BadInput(
            f"backup {ctx.facts['backup_id']} is of {origin}, not {ctx.env}; restoring it over "
            f"{ctx.env} needs --allow-other-env"
        )
    return f"backup of {origin} restored over {ctx.env} (--allow-other-env)"


def restore_prefix(s: Settings) -> str:
    """The name every half-done restore database starts with."""
    return scratch_name(s.backup_scratch_prefix, "restore", "")


@step()
def converge_earlier_restore(ctx: Context) -> str:
    """What an earlier restore that died left, put right before anything else: a restore
    database never swapped in is dropped; the live database accepts connections again; a
    swap done but never confirmed is finished (when it swapped in this very backup) or its
    kept data put under the retention delay (another backup)."""
    s = ctx.settings
    dbs = databases(ctx)
    names = {d.name: d for d in dbs}
    if s.db_name not in names:
        kept = [d.name for d in dbs if d.holds_data_of(s.db_name)]
        raise StepFailed(
            f"database {s.db_name} does not exist on {s.db_host.name}"
            + (f"; kept databases: {', '.join(kept)} (rename one back by hand)" if kept else "")
        )
    if ctx.dry_run:
        return "would drop leftover restore databases and re-enable connections if needed"
    repairs = []
    for d in dbs:
        if d.name.startswith(restore_prefix(s)):
            _drop(ctx, d.name)
            repairs.append(f"dropped {d.name}, left by a restore that died before its swap")
    if not names[s.db_name].allow:
        _psql(ctx, "postgres", allow_connections_sql(s.db_name))
        repairs.append(f"{s.db_name} accepts connections again (a restore died while closing it)")
    for d in dbs:
        if not (d.holds_data_of(s.db_name) and d.unconfirmed):
            continue
        r = d.record or {}
        if r.get("backup") == ctx.facts["backup_id"] and r.get("cerniq") == "previous":
            ctx.facts["resume"] = d.name
            ctx.facts["previous_db"] = d.name
            ctx.facts["pre_restore_backup"] = r.get("pre_restore_backup")
            repairs.append(
                f"{s.db_name} was already swapped to {r['backup']} by a run that died before "
                f"confirming it (old data in {d.name}): confirming it now"
            )
        else:
            _keep(ctx, d.name, r)
            repairs.append(f"{d.name} (left unconfirmed by a restore of {r.get('backup')}) kept")
    for line in repairs:
        ctx.repaired(line)
    return "; ".join(repairs) if repairs else "nothing left by an earlier restore"


@step()
def backup_current_database(ctx: Context) -> str:
    if ctx.facts.get("resume"):
        return f"skipped: the swap was done (before it: backup {ctx.facts['pre_restore_backup']})"
    if ctx.dry_run:
        return f"would back up {ctx.settings.db_name} first (pre-restore)"
    manifest = create_backup(ctx, "pre-restore")
    ctx.facts["pre_restore_backup"] = manifest["id"]
    return f"{manifest['id']} ({manifest['size']} bytes)"


@step()
def restore_into_new_database(ctx: Context) -> str:
    s = ctx.settings
    manifest = ctx.facts["backup"]
    if ctx.facts.get("resume"):
        return "skipped: already swapped in"
    if ctx.dry_run:
        return f"would restore {manifest['id']} into a new database, then check its rows"
    restored = restore_prefix(s) + secrets.token_hex(4)
    ctx.facts["restored_db"] = restored
    try:
        restore_into(ctx, manifest, restored)
    except StepFailed as exc:
        raise StepFailed(f"{exc} ({s.db_name} untouched)") from None
    return f"{manifest['id']} restored into {restored}"


@step()
def compare_row_counts(ctx: Context) -> str:
    if ctx.facts.get("resume"):
        return "skipped: compared before the swap"
    if ctx.dry_run:
        return "would compare every table's rows with the backup's manifest"
    manifest = ctx.facts["backup"]
    problems = compare_counts(manifest["row_counts"], _counts(ctx, ctx.facts["restored_db"]))
    if problems:
        raise StepFailed(
            f"restored rows differ from the backup's in {len(problems)} table(s) "
            f"({ctx.settings.db_name} untouched): {'; '.join(problems[:3])}"
        )
    return (
        f"{len(manifest['row_counts'])} tables, {sum(manifest['row_counts'].values())} rows match"
    )


def _record(ctx: Context, kind: str, state: str) -> dict[str, Any]:
    return {
        "cerniq": kind,
        "env": ctx.env,
        "of": ctx.settings.db_name,
        "backup": ctx.facts["backup_id"],
        "pre_restore_backup": ctx.facts.get("pre_restore_backup"),
        "since": now_utc(),
        "state": state,
        "drop_after": None,
    }


def _keep(ctx: Context, name: str, record: dict[str, Any]) -> str:
    """Put NAME under the retention delay (or drop it now when the delay is 0)."""
    hours = ctx.settings.restore_keep_previous_hours
    if hours <= 0:
        _drop(ctx, name)
        return f"{name} dropped (restore_keep_previous_hours = 0)"
    until = (datetime.now(UTC) + timedelta(hours=hours)).strftime(TIME_FORMAT)
    _psql(
        ctx,
        "postgres",
        comment_database_sql(name, {**record, "state": "kept", "drop_after": until}),
    )
    return f"{name} kept until {until} (`invoke backup.drop-previous --env {ctx.env}` drops it now)"


@step()
def swap_databases(ctx: Context) -> str:
    s = ctx.settings
    if ctx.facts.get("resume"):
        return f"skipped: {s.db_name} is {ctx.facts['backup_id']} since the earlier run"
    if ctx.dry_run:
        return f"would end the sessions on {s.db_name} and swap the restored database in"
    restored = ctx.facts["restored_db"]
    previous = kept_name(s.db_name, "previous", datetime.now(UTC))
    record = _record(ctx, "previous", "swapped")
    try:
        _psql(ctx, "postgres", *swap_databases_statements(s.db_name, restored, previous, record))
    except StepFailed:
        _psql(ctx, "postgres", allow_connections_sql(s.db_name))
        raise
    ctx.facts.pop("restored_db")
    ctx.facts["previous_db"] = previous
    return f"{s.db_name} is now {ctx.facts['backup_id']}; the data before it kept in {previous}"


@step()
def check_app_on_restored(ctx: Context) -> str:
    """The restored database takes connections as the app's user, and the app is healthy."""
    s = ctx.settings
    if ctx.dry_run:
        return f"would connect to {s.db_name} as {s.db_user} and check {s.public_url}/health"
    try:
        info = s.db_conninfo(s.require_secret("db_password_env"))
        with psycopg.connect(**info, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise StepFailed(
            f"{s.db_user} cannot use the restored {s.db_name}: {_first(exc)}"
        ) from None
    version = _current_version(ctx)
    if version is None:
        return f"{s.db_user} connects to {s.db_name}; no app deployed to check"
    ok, last, attempts = wait_healthy(s.public_url, s.health_retries, s.health_interval, version)
    if not ok:
        raise StepFailed(f"the app is not healthy on the restored {s.db_name}: {last.detail}")
    return f"{s.db_user} connects; {s.public_url} healthy on {version} (attempt {attempts})"


@step()
def keep_previous_database(ctx: Context) -> str:
    previous = ctx.facts.get("previous_db")
    if ctx.dry_run or not previous:
        hours = ctx.settings.restore_keep_previous_hours
        return f"would keep the data before the restore for {hours:g} h"
    outcome = _keep(ctx, previous, _record(ctx, "previous", "kept"))
    ctx.facts["previous_kept"] = previous if ctx.settings.restore_keep_previous_hours > 0 else None
    return outcome


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def leave_one_live_database(ctx: Context) -> str | None:
    """on_failure hook of restore: whatever failed, the app is left on one complete database
    that accepts connections. Before the swap: the live one (the half-restored one dropped).
    After it (the app was not healthy on the restored data): the data before is swapped back
    in, and the restored one kept as `<db>_rejected_<time>` (the app may have written to it)."""
    if ctx.state is None or ctx.dry_run:
        return None
    s, done = ctx.settings, []
    restored = ctx.facts.pop("restored_db", None)
    if restored:
        _drop(ctx, restored)
        done.append(f"dropped {restored}; {s.db_name} untouched")
    previous = ctx.facts.get("previous_db")
    if previous and ctx.facts.get("failed_step") == "check_app_on_restored":
        rejected = kept_name(s.db_name, "rejected", datetime.now(UTC))
        record = {**_record(ctx, "rejected", "kept"), "pre_restore_backup": None}
        _psql(ctx, "postgres", *swap_databases_statements(s.db_name, previous, rejected, record))
        _keep(ctx, rejected, record)
        done.append(
            f"swapped back: {s.db_name} has its data from before the restore again; "
            f"the restored one kept as {rejected}"
        )
    elif previous:
        done.append(f"{s.db_name} is {ctx.facts['backup_id']}; the data before it is in {previous}")
    live = next((d for d in databases(ctx) if d.name == s.db_name), None)
    if live is not None and not live.allow:
        _psql(ctx, "postgres", allow_connections_sql(s.db_name))
        done.append(f"{s.db_name} accepts connections again")
    ctx.facts["after_failure"] = done
    return "; ".join(done) or None


RESTORE = (
    find_backup,
    refuse_other_environment,
    check_checksum,
    check_archive,
    converge_earlier_restore,
    backup_current_database,
    restore_into_new_database,
    compare_row_counts,
    swap_databases,
    check_app_on_restored,
    keep_previous_database,
)


def restore(ctx: Context) -> Report:
    return run(RESTORE, ctx, on_failure=(leave_one_live_database,), describe_state=_live_state)


def _live_state(ctx: Context) -> str:
    return "; ".join(ctx.facts.get("after_failure") or []) or f"{ctx.settings.db_name} untouched"
