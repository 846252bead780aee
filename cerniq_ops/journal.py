"""The run journal: how the last locked run of an environment went, on its primary host.

The runner writes it when it takes the lock (`running`), at every step (the step it is at, in
the same command that refreshes the lock) and when it ends (`ok`, `failed`, `refused`). A run
killed with SIGKILL leaves `running` behind: the next run reads that, says where the previous
one died, and its steps converge from what was left.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from cerniq_ops import hosts, lock
from cerniq_ops.audit_checks import describe_age
from cerniq_ops.clock import now_utc
from cerniq_ops.errors import LockHeld
from cerniq_ops.settings import Settings

if TYPE_CHECKING:
    from cerniq_ops.procedure import Context


def journal_path(s: Settings) -> str:
    return f"{s.app_root}/last-run.json"


def entry(record: lock.LockRecord, outcome: str, error: str = "") -> str:
    """The journal's text for the run holding RECORD."""
    run = asdict(record)
    run.pop("extra", None)
    body = {"run": run, "outcome": outcome, "error": error, "at": now_utc()}
    return json.dumps(body, sort_keys=True)


def write_command(path: str, text: str) -> str:
    """Shell text: replace PATH by TEXT atomically (temp file in the same folder, rename)."""
    q = shlex.quote
    temp = f"{path}.tmp-cerniq"
    return f"printf '%s\\n' {q(text)} > {q(temp)} && mv -f {q(temp)} {q(path)}"


def mark_command(s: Settings, record: lock.LockRecord) -> str:
    """Shell text: refresh the lock (only while ours), then journal the step RECORD is at."""
    return (
        f"{lock.refresh_command(lock.lock_path(s), record)} && "
        f"{write_command(journal_path(s), entry(record, 'running'))}"
    )


def mark(ctx: Context, step: str) -> None:
    """The run is at STEP: refresh the lock and the journal (one command on the primary)."""
    assert ctx.held_lock is not None
    fresh = replace(ctx.held_lock, step=step, refreshed=now_utc())
    ok, _, _ = hosts.sh(ctx.primary, mark_command(ctx.settings, fresh), check=False)
    if not ok:
        raise LockHeld(
            f"the deploy lock on {ctx.env} is no longer ours (released with `invoke lock.release` "
            f"while this run worked?); stopped before step '{step}'"
        )
    ctx.held_lock = fresh


def finish(ctx: Context, outcome: str, error: str) -> None:
    """The run ended with OUTCOME; a journal that cannot be written is only a warning."""
    if ctx.held_lock is None or ctx.state is None:
        return
    command = write_command(journal_path(ctx.settings), entry(ctx.held_lock, outcome, error))
    try:
        hosts.sh(ctx.primary, command)
    except Exception as exc:  # the outcome is reported anyway; the next run may warn wrongly
        ctx.progress(f"      warning: run journal not written: {exc}")


def read(ctx: Context) -> dict | None:
    text = hosts.read_file(ctx.primary, journal_path(ctx.settings))
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def death_notice(journal: dict | None, own_token: str, now=None) -> str | None:
    """`a previous run of deploy died at step ...` when JOURNAL shows a run that never ended."""
    if not journal or journal.get("outcome") != "running":
        return None
    run = journal.get("run") or {}
    if run.get("token") == own_token:
        return None
    record = lock.parse(json.dumps(run))
    if record is None or not record.token:
        return "a previous run died (its journal is unreadable)"
    where = f"holder pid {record.pid} on {record.machine}" if record.pid else record.holder
    ago = describe_age(record.idle_seconds(now))
    step = f"at step {record.step}" if record.step else "before its first step"
    return f"a previous run of {record.procedure} died {step} ({where}, {ago} ago)"


def previous_death(ctx: Context) -> str | None:
    assert ctx.held_lock is not None
    return death_notice(read(ctx), ctx.held_lock.token)
