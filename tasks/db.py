"""`invoke db.*`: PostgreSQL migrations (seed section 10) through migrations_runner.

The database of ENV comes from its settings (inventory db host, db_name, db_user); the password
from the environment variable named by the `db_password_env` setting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import task

import migrations_runner as mr
from cerniq_ops import deploy_lock, settings
from cerniq_ops.deploy_inputs import number
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.output import emit_json, say, table
from tasks._cli import cli

MIGRATIONS_DIR = settings.PROJECT_DIR / "migrations"
ENV_HELP = "staging or production"
DIR_HELP = "migrations folder (default: migrations/)"


def _conninfo(s: settings.Settings) -> dict[str, Any]:
    return s.db_conninfo(s.require_secret("db_password_env"))


def _options(s: settings.Settings, lock_wait: float) -> mr.RunOptions:
    return mr.RunOptions(
        lock_timeout=s.migration_lock_timeout,
        statement_timeout=s.migration_statement_timeout,
        lock_wait=number("lock-wait", lock_wait, default=60),
    )


def _dir(migrations_dir: str | None) -> Path:
    return Path(migrations_dir) if migrations_dir else MIGRATIONS_DIR


def _version(value: Any, flag: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{flag} takes a migration version number (got '{value}')") from None


def _require_confirm(s: settings.Settings, confirm: str | None, dry_run: bool) -> None:
    if s.confirm_phrase and not dry_run and confirm != s.confirm_phrase:
        raise BadInput(f'changing the {s.env} database needs --confirm "{s.confirm_phrase}"')


def _backup_function(s: settings.Settings) -> Callable[..., Path]:
    """How the pre-migration backup is taken (setting `migration_backup`): `db-host` runs the
    backup module on the environment's db host (verified, with a manifest); `local` runs
    pg_dump from this machine into backup_dir (for databases without an SSH-reachable host)."""
    if s.migration_backup == "local":
        return mr.pre_migration_backup
    if s.migration_backup != "db-host":
        raise BadInput(f"migration_backup must be db-host or local, not {s.migration_backup!r}")

    def on_db_host(conninfo: Any, backup_dir: Path, label: str) -> Path:
        from cerniq_ops import hosts
        from cerniq_ops.backup.creating import create_backup
        from cerniq_ops.backup.verifying import verify_backup
        from cerniq_ops.procedure import Context

        targets = [s.db_host, *s.app_hosts[:1]]
        with hosts.session(s, targets) as state:
            ctx = Context(s, "db.migrate", state=state, locking=False, progress=say)
            manifest = create_backup(ctx, "pre-migration")
            verified = verify_backup(ctx, manifest, restore=s.backup_verify_restore)
            say(f"pre-migration backup {manifest['id']}: {verified}")
        return Path(s.backup_dir) / f"{manifest['id']}.dump"

    return on_db_host


@task(help={"env": ENV_HELP, "json": "print JSON", "migrations_dir": DIR_HELP})
@cli
def status(c, env, json=False, migrations_dir=None):
    """Show each migration of ENV: applied, pending, drifted (file changed) or missing-file."""
    s = settings.load(env)
    rows = mr.status(_conninfo(s), _dir(migrations_dir))
    if json:
        emit_json([vars(r) for r in rows])
        return
    say(
        table(
            ["version", "name", "state", "applied_at", "applied_by", "duration"],
            [
                (
                    f"{r.version:04d}",
                    r.name,
                    r.state,
                    f"{r.applied_at:%Y-%m-%d %H:%M:%S}" if r.applied_at else "",
                    r.applied_by,
                    f"{r.duration.total_seconds():.3f}s" if r.duration is not None else "",
                )
                for r in rows
            ],
        )
    )
    counts = {state: sum(r.state == state for r in rows) for state in ("applied", "pending")}
    say(
        f"{s.env}: {counts['applied']} applied, {counts['pending']} pending, "
        f"{sum(r.state == 'drifted' for r in rows)} drifted, "
        f"{sum(r.state == 'missing-file' for r in rows)} missing-file"
    )


@task(
    help={
        "env": ENV_HELP,
        "dry_run": "list what would run and why; change nothing",
        "to": "apply only up to this version",
        "skip_staging_check": "production: do not require the migrations applied on staging",
        "reason": "why the staging check is skipped (recorded in schema_migrations_events)",
        "confirm": "the typed confirmation the environment needs (production)",
        "lock_wait": "seconds to wait for the deploy lock and a migration lock (default 60)",
        "migrations_dir": DIR_HELP,
    }
)
@cli
def migrate(
    c,
    env,
    dry_run=False,
    to=None,
    skip_staging_check=False,
    reason=None,
    confirm=None,
    lock_wait=None,
    migrations_dir=None,
):
    """Lint, verify checksums, then apply ENV's pending migrations (production: staging first,
    then a pre-migration backup). Holds ENV's deploy lock."""
    s = settings.load(env)
    if skip_staging_check != bool(reason):
        raise BadInput('--skip-staging-check and --reason "..." go together (the reason is kept)')
    gate = None
    if s.env == "production":
        _require_confirm(s, confirm, dry_run)
        gate = mr.ProductionGate(
            staging=None if skip_staging_check else _conninfo(settings.load("staging")),
            backup_dir=Path(s.backup_dir),
            label=s.env,
            skip_staging_reason=reason,
            backup=_backup_function(s),
        )
    target = _version(to, "--to")
    if dry_run:
        mr.migrate(_conninfo(s), _dir(migrations_dir), options=_options(s, lock_wait),
                   target=target, gate=gate, dry_run=True)  # fmt: skip
        return
    with deploy_lock.held(s, "db.migrate", wait=number("lock-wait", lock_wait, default=60)):
        applied = mr.migrate(
            _conninfo(s),
            _dir(migrations_dir),
            options=_options(s, lock_wait),
            target=target,
            gate=gate,
        )
    if applied:
        say(f"{s.env}: applied {len(applied)} migration(s), newest {applied[-1].label}")


@task(
    help={
        "env": ENV_HELP,
        "steps": "roll back the last N applied migrations (default 1)",
        "to": "roll back every migration above this version (0: all)",
        "dry_run": "list what would be rolled back; change nothing",
        "confirm": "the typed confirmation the environment needs (production)",
        "lock_wait": "seconds to wait for the deploy lock and a migration lock (default 60)",
        "migrations_dir": DIR_HELP,
    }
)
@cli
def rollback(
    c, env, steps=None, to=None, dry_run=False, confirm=None, lock_wait=None, migrations_dir=None
):
    """Run down() of ENV's newest applied migrations (production: backup first). Holds ENV's
    deploy lock."""
    s = settings.load(env)
    production = s.env == "production"
    if production:
        _require_confirm(s, confirm, dry_run)
    arguments = {
        "steps": _version(steps, "--steps"),
        "to": _version(to, "--to"),
        "options": _options(s, lock_wait),
        "backup_dir": Path(s.backup_dir) if production else None,
        "backup_label": f"{s.env}-rollback",
        "backup": _backup_function(s),
    }
    if dry_run:
        mr.rollback(_conninfo(s), _dir(migrations_dir), dry_run=True, **arguments)
        return
    with deploy_lock.held(s, "db.rollback", wait=number("lock-wait", lock_wait, default=60)):
        done = mr.rollback(_conninfo(s), _dir(migrations_dir), **arguments)
    if done:
        say(f"{s.env}: rolled back {', '.join(m.label for m in done)}")


@task(
    help={
        "name": "lower_snake_case name, e.g. add_negotiation_notes",
        "non_transactional": "autocommit migration (CREATE INDEX CONCURRENTLY, db.backfill)",
        "migrations_dir": DIR_HELP,
    }
)
@cli
def new(c, name, non_transactional=False, migrations_dir=None):
    """Create the next migration file NNNN_NAME.py with up(db)/down(db)."""
    path = mr.create_migration(_dir(migrations_dir), name, transactional=not non_transactional)
    say(f"created {path}")


@task(
    iterable=["path"],
    help={"path": "file or folder to lint (repeatable; default: migrations/)", "json": "JSON"},
)
@cli
def lint(c, path=None, json=False):
    """Check migrations for unsafe statements (rule, file:line, safe alternative)."""
    paths = [Path(p) for p in path] if path else [MIGRATIONS_DIR]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BadInput(f"no such file or folder: {', '.join(missing)}")
    findings = mr.lint_paths(paths)
    if json:
        emit_json([f.as_dict() for f in findings])
    else:
        for f in findings:
            say(f.format())
    if findings:
        raise StepFailed(f"lint: {len(findings)} unsafe statement(s), first {findings[0].location}")
    if not json:
        say("lint: no findings")


@task(help={"env": ENV_HELP, "json": "print JSON", "migrations_dir": DIR_HELP})
@cli
def verify(c, env, json=False, migrations_dir=None):
    """Check ENV: applied files unchanged (checksums), none missing, no INVALID index."""
    s = settings.load(env)
    report = mr.verify(_conninfo(s), _dir(migrations_dir))
    if json:
        emit_json(
            {
                "ok": report.ok,
                "problems": report.problems,
                "invalid_indexes": [vars(i) for i in report.invalid_indexes],
            }
        )
    else:
        for line in report.problems + [i.describe() for i in report.invalid_indexes]:
            say(line)
    if not report.ok:
        count = len(report.problems) + len(report.invalid_indexes)
        raise StepFailed(f"verify: {count} problem(s) in {s.env}")
    if not json:
        applied = sum(r.state == "applied" for r in report.rows)
        say(f"verify: {s.env} ok: {applied} applied migration(s) match their files")
