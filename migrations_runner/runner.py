"""Run migrations against one database: lock, verify, gate, apply or roll back, record.

Every public function takes a conninfo (keyword mapping, conninfo string or URI); the tasks in
tasks/db.py resolve it from the environment's settings.
"""

from __future__ import annotations

import dataclasses
import getpass
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from cerniq_ops.errors import BadInput, LockHeld, StepFailed
from cerniq_ops.output import say
from migrations_runner import lint, sql
from migrations_runner.backup import Conninfo, conninfo_dict, pre_migration_backup
from migrations_runner.db import MigrationDB
from migrations_runner.migration import Migration, discover
from migrations_runner.plan import (
    Applied,
    StatusRow,
    check_integrity,
    describe,
    integrity_problems,
    make_plan,
    rollback_targets,
    staging_gate_problems,
    status_rows,
    up_to,
)

Log = Callable[[str], None]
BackupFn = Callable[[Conninfo, Path, str], Path]


def default_actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class RunOptions:
    lock_timeout: str = "5s"  # per statement, while waiting for a table lock
    statement_timeout: str = "15min"  # per statement
    lock_wait: float = 60.0  # seconds to wait for another runner's advisory lock
    retries: int = 3  # extra attempts of a transactional migration after a lock timeout
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    actor: str = field(default_factory=default_actor)


@dataclass(frozen=True)
class ProductionGate:
    """Seed 10.2 for production: staging first, then a backup, before anything runs."""

    staging: Conninfo | None  # None only together with skip_staging_reason
    backup_dir: Path
    label: str = "production"
    skip_staging_reason: str | None = None
    backup: BackupFn = pre_migration_backup


@dataclass(frozen=True)
class InvalidIndex:
    schema: str
    index: str
    table: str

    def describe(self) -> str:
        return (
            f"INVALID index {self.schema}.{self.index} on {self.table}; "
            f"clean with: {sql.drop_invalid_index(self.schema, self.index)}"
        )


@dataclass(frozen=True)
class VerifyReport:
    rows: list[StatusRow]
    problems: list[str]
    invalid_indexes: list[InvalidIndex]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.invalid_indexes


# -- connection, lock, history ----------------------------------------------------------------
def connect(conninfo: Conninfo) -> psycopg.Connection[Any]:
    """An autocommit connection (the runner opens transactions itself)."""
    try:
        if isinstance(conninfo, str):
            return psycopg.connect(conninfo, autocommit=True)
        return psycopg.connect(**conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        info = conninfo_dict(conninfo)
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        raise StepFailed(
            f"cannot connect to the database {where} as {info.get('user', '?')}: {_first_line(exc)}"
        ) from None


@contextmanager
def migration_lock(conn: psycopg.Connection[Any], wait: float) -> Iterator[None]:
    """Hold the session-level advisory lock that serialises runners on this database."""
    conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{max(1, int(wait * 1000))}ms"])
    try:
        conn.execute(sql.LOCK, sql.LOCK_KEY)
    except pg_errors.LockNotAvailable:
        row = conn.execute(sql.LOCK_HOLDER, sql.LOCK_KEY).fetchone()
        holder = (
            f"pid {row[0]} (application_name '{row[1]}', user {row[2]}, {row[3]}, "
            f"connected since {row[4]:%Y-%m-%d %H:%M:%S %Z})"
            if row
            else "a session that has just released it"
        )
        raise LockHeld(
            f"migration lock on database '{conn.info.dbname}' held by {holder}; waited "
            f"{wait:g}s; another db.migrate/db.rollback is running: let it finish, or stop it "
            f"with SELECT pg_terminate_backend({row[0] if row else 'PID'})"
        ) from None
    finally:
        conn.execute("RESET lock_timeout")
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(sql.UNLOCK, sql.LOCK_KEY)


def ensure_history(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.CREATE_HISTORY)


def read_history(conn: psycopg.Connection[Any]) -> list[Applied]:
    """Rows of schema_migrations; none when the table does not exist yet (nothing created)."""
    exists = conn.execute(sql.HISTORY_EXISTS, [sql.HISTORY_TABLE]).fetchone()
    if not exists or not exists[0]:
        return []
    return [Applied(*row) for row in conn.execute(sql.SELECT_HISTORY)]


def invalid_indexes(conn: psycopg.Connection[Any]) -> list[InvalidIndex]:
    return [InvalidIndex(*row) for row in conn.execute(sql.INVALID_INDEXES)]


def record_event(
    conn: psycopg.Connection[Any], actor: str, action: str, version: int | None, detail: str = ""
) -> None:
    conn.execute(sql.INSERT_EVENT, [actor, action, version, detail])


# -- read-only commands -----------------------------------------------------------------------
def status(conninfo: Conninfo, migrations_dir: Path) -> list[StatusRow]:
    migrations = discover(migrations_dir)
    with connect(conninfo) as conn:
        return status_rows(migrations, read_history(conn))


def pending(conninfo: Conninfo, migrations_dir: Path) -> list[Migration]:
    """The migrations not applied yet (read only: no lock, nothing created)."""
    migrations = discover(migrations_dir)
    with connect(conninfo) as conn:
        return list(make_plan(migrations, read_history(conn)).pending)


def verify(conninfo: Conninfo, migrations_dir: Path) -> VerifyReport:
    """Checksums of applied files, applied versions without a file, INVALID indexes."""
    migrations = discover(migrations_dir)
    with connect(conninfo) as conn:
        applied = read_history(conn)
        bad_indexes = invalid_indexes(conn)
    plan = dataclasses.replace(make_plan(migrations, applied), out_of_order=())
    problems = integrity_problems(plan)
    return VerifyReport(status_rows(migrations, applied), problems, bad_indexes)


def staging_gate(
    production: psycopg.Connection[Any], staging: Conninfo, migrations: Sequence[Migration]
) -> None:
    """StepFailed unless every migration pending on PRODUCTION is applied on STAGING."""
    pending = make_plan(migrations, read_history(production)).pending
    with connect(staging) as conn:
        problems = staging_gate_problems(pending, read_history(conn))
    if problems:
        raise StepFailed(
            f"staging gate: {'; '.join(problems)}; run `invoke db.migrate --env staging` first "
            f'(or --skip-staging-check --reason "...")'
        )


# -- migrate / rollback -----------------------------------------------------------------------
def migrate(
    conninfo: Conninfo,
    migrations_dir: Path,
    *,
    options: RunOptions | None = None,
    target: int | None = None,
    gate: ProductionGate | None = None,
    dry_run: bool = False,
    log: Log = say,
    repaired: Log | None = None,
) -> list[Migration]:
    """Apply the pending migrations (up to TARGET) in version order; return those applied.

    What a killed earlier run left is put right and told to REPAIRED (default: a `repaired:`
    log line): an INVALID index of a pending migration's interrupted CONCURRENTLY build is
    dropped so the migration builds it again. The history table and the advisory lock cover
    the rest (a killed transactional migration rolled back; a backfill resumes).
    """
    options = options or RunOptions()
    repaired = repaired or (lambda line: log(f"repaired: {line}"))
    migrations = discover(migrations_dir)
    with connect(conninfo) as conn:
        if dry_run:
            return _dry_run_migrate(conn, migrations, options, target, gate, log)
        with migration_lock(conn, options.lock_wait):
            ensure_history(conn)
            plan = make_plan(migrations, read_history(conn))
            check_integrity(plan)
            todo = up_to(plan.pending, target)
            if not todo:
                log("database is up to date: no pending migrations")
                return []
            _check_lint(todo)
            _repair_invalid_indexes(conn, todo, repaired)
            log(f"pending: {', '.join(m.label for m in todo)}")
            if gate:
                _production_gate(conn, conninfo, migrations, gate, options.actor, log)
            for m in todo:
                _run(conn, m, "up", options, log)
    return list(todo)


def rollback(
    conninfo: Conninfo,
    migrations_dir: Path,
    *,
    steps: int | None = None,
    to: int | None = None,
    options: RunOptions | None = None,
    backup_dir: Path | None = None,
    backup_label: str = "rollback",
    backup: BackupFn = pre_migration_backup,
    dry_run: bool = False,
    log: Log = say,
) -> list[Migration]:
    """Run down() of the last STEPS applied migrations (default 1), or of all above TO.

    With BACKUP_DIR, BACKUP(conninfo, backup_dir, backup_label) runs first.
    """
    options = options or RunOptions()
    migrations = discover(migrations_dir)
    with connect(conninfo) as conn:
        if dry_run:
            todo = rollback_targets(migrations, read_history(conn), steps, to)
            _describe_all(todo, "down", options, log)
            return []
        with migration_lock(conn, options.lock_wait):
            ensure_history(conn)
            applied = read_history(conn)
            # down() of a changed file is not the undo of what up() did
            plan = make_plan(migrations, applied)
            check_integrity(dataclasses.replace(plan, missing=(), out_of_order=()))
            todo = rollback_targets(migrations, applied, steps, to)
            if backup_dir is not None:
                path = backup(conninfo, backup_dir, backup_label)
                record_event(conn, options.actor, "backup", None, str(path))
                log(f"pre-rollback backup: {path}")
            for m in todo:
                _run(conn, m, "down", options, log)
    return list(todo)


def _dry_run_migrate(
    conn: psycopg.Connection[Any],
    migrations: Sequence[Migration],
    options: RunOptions,
    target: int | None,
    gate: ProductionGate | None,
    log: Log,
) -> list[Migration]:
    """What `migrate` would do and why; changes nothing (no lock, no history table)."""
    plan = make_plan(migrations, read_history(conn))
    check_integrity(plan)
    todo = up_to(plan.pending, target)
    if not todo:
        log("dry run: database is up to date: nothing would run")
        return []
    _check_lint(todo)
    for bad in invalid_indexes(conn):
        owner = _builder(bad, todo)
        if owner:
            log(
                f"dry run: would drop {bad.schema}.{bad.index} (INVALID, left by an interrupted "
                f"build of {owner.label}) and build it again"
            )
        else:
            log(f"dry run: migrate would stop: {bad.describe()}")
    if gate:
        if gate.skip_staging_reason:
            log(f"dry run: staging check skipped: {gate.skip_staging_reason}")
        else:
            assert gate.staging is not None
            staging_gate(conn, gate.staging, migrations)
            log("dry run: staging check passed: every pending migration is applied on staging")
        log(f"dry run: would take a pre-migration backup (pg_dump custom) into {gate.backup_dir}")
    _describe_all(todo, "up", options, log)
    return []


def _describe_all(todo: Sequence[Migration], direction: str, options: RunOptions, log: Log) -> None:
    o = options
    for m in todo:
        line = describe(m, direction, o.lock_timeout, o.statement_timeout, o.retries)
        log(f"dry run: would {line}")


def _check_lint(todo: Sequence[Migration]) -> None:
    findings = [f for m in todo for f in lint.lint_file(m.path)]
    if findings:
        first = findings[0]
        raise StepFailed(
            f"lint: {len(findings)} finding(s) in pending migrations, first: {first.location}: "
            f"[{first.rule}] {first.message}; run `invoke db.lint`; nothing was run"
        )


def _builder(bad: InvalidIndex, todo: Sequence[Migration]) -> Migration | None:
    """The pending migration whose CONCURRENTLY build makes BAD (it left it INVALID)."""
    return next((m for m in todo if bad.index in m.concurrent_indexes), None)


def _repair_invalid_indexes(
    conn: psycopg.Connection[Any], todo: Sequence[Migration], repaired: Log
) -> None:
    """Drop INVALID indexes a pending migration builds (its interrupted build left them);
    refuse on any other INVALID index (nobody here knows what it is for)."""
    unknown = []
    for bad in invalid_indexes(conn):
        owner = _builder(bad, todo)
        if owner is None:
            unknown.append(bad)
            continue
        conn.execute(sql.drop_invalid_index(bad.schema, bad.index))
        repaired(
            f"dropped INVALID index {bad.schema}.{bad.index} on {bad.table}, left by an "
            f"interrupted build of {owner.label}; it is built again"
        )
    if unknown:
        raise StepFailed(
            "found "
            + "; ".join(b.describe() for b in unknown)
            + " (left by a failed CREATE INDEX CONCURRENTLY; `IF NOT EXISTS` would keep it "
            "invalid); nothing was run"
        )


def _production_gate(
    conn: psycopg.Connection[Any],
    conninfo: Conninfo,
    migrations: Sequence[Migration],
    gate: ProductionGate,
    actor: str,
    log: Log,
) -> None:
    if gate.skip_staging_reason:
        record_event(conn, actor, "staging_check_skipped", None, gate.skip_staging_reason)
        log(f"staging check SKIPPED (recorded): {gate.skip_staging_reason}")
    else:
        if gate.staging is None:
            raise BadInput("production migrate needs the staging database or --skip-staging-check")
        staging_gate(conn, gate.staging, migrations)
        log("staging check passed: every pending migration is applied on staging")
    path = gate.backup(conninfo, gate.backup_dir, gate.label)
    record_event(conn, actor, "backup", None, str(path))
    log(f"pre-migration backup: {path}")


def _run(
    conn: psycopg.Connection[Any], m: Migration, direction: str, options: RunOptions, log: Log
) -> None:
    """Run M's up() or down(), retrying a transactional one after a lock timeout."""
    fn = m.function(direction)
    verb = "apply" if direction == "up" else "roll back"
    timeout = m.statement_timeout or options.statement_timeout
    own = f", statement_timeout {timeout} (the migration's own)" if m.statement_timeout else ""
    for attempt in range(options.retries + 1):
        log(f"{verb} {m.label} ({'transactional' if m.transactional else 'autocommit'}{own})")
        db = MigrationDB(conn, transactional=m.transactional, log=log)
        conn.execute(sql.SET_TIMEOUTS, [options.lock_timeout, timeout])
        started = time.monotonic()
        try:
            if m.transactional:
                with conn.transaction():
                    fn(db)
                    _record(conn, m, direction, options.actor, time.monotonic() - started)
            else:
                fn(db)
                _record(conn, m, direction, options.actor, time.monotonic() - started)
        except pg_errors.LockNotAvailable as exc:
            # A transaction rolled back, or an autocommit migration that changed nothing yet
            # (no statement done, no INVALID index left), can simply run again.
            untouched = m.transactional or (not db.touched and not invalid_indexes(conn))
            if untouched and attempt < options.retries:
                delay = options.backoff * 2**attempt
                undone = "rolled back" if m.transactional else "nothing was done yet"
                log(
                    f"  lock timeout ({options.lock_timeout}) at {_where(exc, m)}; {undone}; "
                    f"retry {attempt + 1}/{options.retries} in {delay:g}s"
                )
                time.sleep(delay)
                continue
            _fail(conn, m, direction, db, exc, options.actor, log)
        except Exception as exc:
            _fail(conn, m, direction, db, exc, options.actor, log)
        finally:
            if not conn.closed:
                conn.execute(sql.RESET_TIMEOUTS)
        log(f"  done in {time.monotonic() - started:.2f}s")
        return


def _record(
    conn: psycopg.Connection[Any], m: Migration, direction: str, actor: str, seconds: float
) -> None:
    if direction == "up":
        conn.execute(
            sql.INSERT_HISTORY, [m.version, m.name, m.checksum, actor, timedelta(seconds=seconds)]
        )
        record_event(conn, actor, "applied", m.version, f"{m.name} in {seconds:.3f}s")
    else:
        conn.execute(sql.DELETE_HISTORY, [m.version])
        record_event(conn, actor, "rolled_back", m.version, f"{m.name} in {seconds:.3f}s")


def _fail(
    conn: psycopg.Connection[Any],
    m: Migration,
    direction: str,
    db: MigrationDB,
    exc: BaseException,
    actor: str,
    log: Log,
) -> None:
    """Say exactly what is left after M failed, record it, raise StepFailed."""
    what = f"{'up' if direction == 'up' else 'down'}() of {m.label} failed at {_where(exc, m)}"
    if m.transactional:
        state = (
            "its transaction was rolled back: nothing of it remains and schema_migrations "
            "is unchanged; fix the migration and re-run"
        )
    else:
        for stmt in db.done:
            log(f"  completed before the failure (still applied): {stmt[:120]}")
        for line in db.unfinished():
            log(f"  {line}")
        leftovers = invalid_indexes(conn) if not conn.closed else []
        for bad in leftovers:
            log(f"  left behind: {bad.describe()}")
        cleanup = " ".join(sql.drop_invalid_index(b.schema, b.index) for b in leftovers)
        partial = "".join(f"; {line}" for line in db.unfinished())
        state = (
            f"it is non-transactional: {len(db.done)} statement(s) before the failure stayed "
            f"applied{partial} and schema_migrations has no change for it"
            + (f"; left behind INVALID index(es), clean with: {cleanup}" if leftovers else "")
            + "; make its statements re-runnable (IF NOT EXISTS) and re-run"
        )
    if not conn.closed:
        record_event(conn, actor, f"{direction}_failed", m.version, _first_line(exc))
    raise StepFailed(f"{what}: {_first_line(exc)}; {state}") from exc


def _where(exc: BaseException, m: Migration) -> str:
    """FILE:LINE of the innermost frame of the migration file in EXC's traceback."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename) == m.path:
            line = lineno
    return f"{m.path.name}:{line}" if line else m.path.name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
