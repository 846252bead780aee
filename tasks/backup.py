"""`invoke backup.*`: backups proven restorable (docs/runbooks/backups.md).

Thin: parse options, confirm, run the procedure of cerniq_ops.backup, print.
"""

from __future__ import annotations

from invoke import task

from cerniq_ops import backup, settings
from cerniq_ops.confirm import require
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.output import emit_json, say, table
from cerniq_ops.procedure import Context, Report
from tasks._cli import cli

ENV_HELP = "staging or production"
JSON_HELP = "print the result as JSON (progress goes to stderr)"
DRY_HELP = "show what would be done; change nothing"


def _context(env: str, procedure: str, *, dry_run: bool, json: bool, **options) -> Context:
    ctx = Context(settings.load(env), f"backup.{procedure}", dry_run=dry_run, options=options)
    if json:
        ctx.progress = lambda line: say(line, err=True)
    return ctx


def _emit(report: Report) -> None:
    emit_json(report.to_dict())


@task(
    help={
        "env": ENV_HELP,
        "label": f"why it is taken: {', '.join(backup.LABELS)} (default manual)",
        "dry_run": DRY_HELP,
        "json": JSON_HELP,
    }
)
@cli
def create(c, env, label="manual", dry_run=False, json=False):
    """Back up ENV's database on its db host: pg_dump custom format + manifest (mode 600)."""
    if label not in backup.LABELS:
        raise BadInput(f"unknown --label '{label}'; choose one of: {', '.join(backup.LABELS)}")
    report = backup.create(_context(env, "create", dry_run=dry_run, json=json, label=label))
    if json:
        _emit(report)
    elif not dry_run:
        say(f"backup {report.facts['backup']['id']} created")


@task(
    name="list",
    help={
        "env": ENV_HELP,
        "json": JSON_HELP,
        "check": "exit 1 unless a verified backup younger than "
        "backup_max_verified_age_hours exists (for audits and CI)",
    },
)
@cli
def list_(c, env, json=False, check=False):
    """List the backups on ENV's db host, newest first, with their verification state."""
    report = backup.list_(_context(env, "list", dry_run=False, json=True))
    facts = report.facts
    if json:
        emit_json(
            {
                "backups": facts["backups"],
                "verified": facts["verified"],
                "leftovers": facts["leftovers"],
            }
        )
    else:
        rows = [
            (
                b["id"],
                b["label"],
                b["env"],
                b["version"] or "-",
                b["size"],
                b["finished"],
                b["state"],
            )
            for b in facts["backups"]
        ]
        say(table(["id", "label", "env", "version", "bytes", "finished", "state"], rows))
        for name in facts["leftovers"]:
            say(f"leftover {name}: a backup run died before its manifest; backup.prune removes it")
        fresh = facts["verified"]
        if fresh["newest_verified"]:
            say(f"newest verified: {fresh['newest_verified']} ({fresh['age_hours']} h old)")
        else:
            say("no verified backup: run `invoke backup.verify`")
    if check and not facts["verified"]["fresh"]:
        limit = settings.load(env).backup_max_verified_age_hours
        raise StepFailed(f"{env} has no verified backup younger than {limit} h")


@task(
    help={
        "env": ENV_HELP,
        "id": "the backup to verify (default: the newest of ENV)",
        "json": JSON_HELP,
    }
)
@cli
def verify(c, env, id=None, json=False):
    """Prove a backup restorable: checksum, pg_restore --list, test restore with row counts."""
    if id is not None:
        backup.check_id(id)
    report = backup.verify(_context(env, "verify", dry_run=False, json=json, id=id))
    if json:
        _emit(report)
    else:
        say(f"backup {report.facts['backup_id']} verified")


@task(
    help={
        "id": "the backup to restore (see `invoke backup.list`)",
        "env": ENV_HELP,
        "confirm": 'the typed confirmation "RESTORE <env>" when not at a terminal',
        "allow_other_env": "allow restoring a backup taken of another environment",
        "dry_run": DRY_HELP,
        "json": JSON_HELP,
    }
)
@cli
def restore(c, id, env, confirm=None, allow_other_env=False, dry_run=False, json=False):
    """Restore backup ID over ENV's database (a fresh backup is taken first)."""
    backup.check_id(id)
    settings.load(env)
    if not dry_run:
        require(f"RESTORE {env}", confirm, f"restore backup {id} over the {env} database")
    ctx = _context(
        env, "restore", dry_run=dry_run, json=json, id=id, allow_other_env=allow_other_env
    )
    report = backup.restore(ctx)
    if json:
        _emit(report)
    elif not dry_run:
        facts = report.facts
        kept = f", and the database {facts['previous_kept']}" if facts.get("previous_kept") else ""
        before = facts["pre_restore_backup"]
        say(f"{env} restored from {id}; the data before it: backup {before}{kept}")


@task(
    help={
        "env": ENV_HELP,
        "keep_last": "keep at least the newest N backups (default: setting backup_keep_last)",
        "keep_days": "keep every backup younger than D days (default: backup_keep_days)",
        "dry_run": DRY_HELP,
        "json": JSON_HELP,
    }
)
@cli
def prune(c, env, keep_last=None, keep_days=None, dry_run=False, json=False):
    """Delete ENV's backups retention lets go; never the newest verified one."""
    options = {"keep_last": _number(keep_last, "--keep-last", int)}
    options["keep_days"] = _number(keep_days, "--keep-days", float)
    given_last, given_days = options["keep_last"], options["keep_days"]
    backup.Retention(1 if given_last is None else given_last, given_days or 0)  # checked up front
    report = backup.prune(_context(env, "prune", dry_run=dry_run, json=json, **options))
    if json:
        _emit(report)
    elif not dry_run:
        for name in report.facts["deleted"] + report.facts["broken"]:
            say(f"deleted {name}")
        for name in report.facts["dropped_databases"]:
            say(f"dropped database {name}")


@task(
    name="drop-previous",
    help={
        "env": ENV_HELP,
        "confirm": 'the typed confirmation "DROP PREVIOUS <env>" when not at a terminal',
        "dry_run": DRY_HELP,
        "json": JSON_HELP,
    },
)
@cli
def drop_previous(c, env, confirm=None, dry_run=False, json=False):
    """Drop the databases restores kept (the data a restore replaced) before their delay ends."""
    settings.load(env)
    if not dry_run:
        require(f"DROP PREVIOUS {env}", confirm, f"drop the databases restores kept on {env}")
    report = backup.drop_previous(_context(env, "drop-previous", dry_run=dry_run, json=json))
    if json:
        _emit(report)
    elif not dry_run:
        for name in report.facts["dropped_databases"]:
            say(f"dropped database {name}")


def _number(value, flag: str, kind):
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise BadInput(f"{flag} takes a number (got '{value}')") from None
