"""What would run and why: pure functions over the files and the history rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cerniq_ops.errors import BadInput, StepFailed
from migrations_runner.migration import VERSION_WIDTH, Migration


@dataclass(frozen=True)
class Applied:
    """A row of schema_migrations."""

    version: int
    name: str
    checksum: str
    applied_at: datetime | None = None
    applied_by: str = ""
    duration: timedelta | None = None


@dataclass(frozen=True)
class Plan:
    pending: tuple[Migration, ...]
    drifted: tuple[tuple[Migration, Applied], ...]  # applied, file changed since
    missing: tuple[Applied, ...]  # applied, no file
    out_of_order: tuple[Migration, ...]  # pending, older than the newest applied


def v(version: int) -> str:
    return f"{version:0{VERSION_WIDTH}d}"


def make_plan(migrations: Sequence[Migration], applied: Sequence[Applied]) -> Plan:
    by_version = {a.version: a for a in applied}
    files = {m.version for m in migrations}
    newest = max(by_version, default=0)
    pending = tuple(m for m in migrations if m.version not in by_version)
    return Plan(
        pending=pending,
        drifted=tuple(
            (m, by_version[m.version])
            for m in migrations
            if m.version in by_version and by_version[m.version].checksum != m.checksum
        ),
        missing=tuple(a for a in applied if a.version not in files),
        out_of_order=tuple(m for m in pending if m.version < newest),
    )


def integrity_problems(plan: Plan) -> list[str]:
    """Why nothing may run, one clause per family (empty: safe to go on)."""
    problems = []
    if plan.drifted:
        files = ", ".join(
            f"{m.path.name} (applied {a.checksum[:12]}, file now {m.checksum[:12]})"
            for m, a in plan.drifted
        )
        problems.append(
            f"checksum drift: {len(plan.drifted)} applied migration file(s) changed since they "
            f"were applied: {files}; restore them (git log -p FILE) and put the change in a new "
            f"migration"
        )
    if plan.missing:
        versions = ", ".join(f"{v(a.version)} {a.name}" for a in plan.missing)
        problems.append(
            f"applied migration(s) with no file here: {versions}; this checkout is older than "
            f"the database (use the release that has them, or `db.rollback` from it)"
        )
    if plan.out_of_order:
        versions = ", ".join(m.label for m in plan.out_of_order)
        problems.append(
            f"pending migration(s) older than the newest applied one: {versions}; "
            f"renumber them after the newest applied version"
        )
    return problems


def check_integrity(plan: Plan) -> None:
    problems = integrity_problems(plan)
    if problems:
        raise StepFailed("; ".join(problems) + "; nothing was run")


def up_to(pending: Sequence[Migration], target: int | None) -> tuple[Migration, ...]:
    return tuple(m for m in pending if target is None or m.version <= target)


def rollback_targets(
    migrations: Sequence[Migration],
    applied: Sequence[Applied],
    steps: int | None = None,
    to: int | None = None,
) -> tuple[Migration, ...]:
    """The applied migrations to undo, newest first: the last STEPS, or everything above TO."""
    if steps is not None and to is not None:
        raise BadInput("give either --steps or --to, not both")
    if steps is not None and steps < 1:
        raise BadInput(f"--steps must be at least 1 (got {steps})")
    versions = sorted((a.version for a in applied), reverse=True)
    if to is not None:
        if to != 0 and to not in versions:
            raise BadInput(f"--to {to}: version not applied (applied: {_short(versions)})")
        chosen = [x for x in versions if x > to]
    else:
        chosen = versions[: steps or 1]
    files = {m.version: m for m in migrations}
    no_file = [v(x) for x in chosen if x not in files]
    if no_file:
        raise StepFailed(
            f"cannot roll back {', '.join(no_file)}: no file in this checkout to run down() from"
        )
    irreversible = [files[x].label for x in chosen if not files[x].reversible]
    if irreversible:
        raise StepFailed(f"cannot roll back {', '.join(irreversible)}: no down(db) function")
    return tuple(files[x] for x in chosen)


def _short(versions: Sequence[int]) -> str:
    return ", ".join(v(x) for x in sorted(versions)) or "none"


# -- status -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    version: int
    name: str
    state: str  # applied | pending | drifted | missing-file
    applied_at: datetime | None = None
    applied_by: str = ""
    duration: timedelta | None = None


def status_rows(migrations: Sequence[Migration], applied: Sequence[Applied]) -> list[StatusRow]:
    plan = make_plan(migrations, applied)
    drifted = {m.version for m, _ in plan.drifted}
    by_version = {a.version: a for a in applied}
    rows = []
    for m in migrations:
        a = by_version.get(m.version)
        if a is None:
            rows.append(StatusRow(m.version, m.name, "pending"))
        else:
            state = "drifted" if m.version in drifted else "applied"
            rows.append(StatusRow(m.version, m.name, state, a.applied_at, a.applied_by, a.duration))
    rows += [
        StatusRow(a.version, a.name, "missing-file", a.applied_at, a.applied_by, a.duration)
        for a in plan.missing
    ]
    return sorted(rows, key=lambda r: r.version)


# -- production gate --------------------------------------------------------------------------
def staging_gate_problems(pending: Sequence[Migration], staging: Sequence[Applied]) -> list[str]:
    """Each pending production migration must already be applied on staging, same file."""
    on_staging = {a.version: a for a in staging}
    problems = []
    not_applied = [m.label for m in pending if m.version not in on_staging]
    if not_applied:
        problems.append(f"not applied on staging: {', '.join(not_applied)}")
    changed = [
        m.label
        for m in pending
        if m.version in on_staging and on_staging[m.version].checksum != m.checksum
    ]
    if changed:
        problems.append(f"applied on staging from a different file: {', '.join(changed)}")
    return problems


# -- dry run ----------------------------------------------------------------------------------
def describe(
    m: Migration, direction: str, lock_timeout: str, statement_timeout: str, retries: int
) -> str:
    """One line: what would run for M and why, and how."""
    why = "pending (not in schema_migrations)" if direction == "up" else "applied; rolling back"
    retried = f"; retried up to {retries}x on lock timeout" if retries else ""
    if m.transactional:
        how = f"in one transaction (all or nothing){retried}"
    else:
        how = (
            f"non-transactional (autocommit): a failure may leave work behind{retried} "
            f"only while nothing is done yet"
            if retries
            else "non-transactional (autocommit): a failure may leave work behind"
        )
    timeout = m.statement_timeout or statement_timeout
    own = " (the migration's own)" if m.statement_timeout else ""
    return (
        f"{'apply' if direction == 'up' else 'roll back'} {m.label}: {why}; {how}; "
        f"lock_timeout {lock_timeout}, statement_timeout {timeout}{own}"
    )
