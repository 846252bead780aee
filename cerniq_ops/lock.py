"""The deploy lock of an environment: one file on the primary host, taken atomically.

Taking it is `ln` of a fully written temporary file to the lock name: link(2) fails when the
lock exists, so two runners can never both hold it, and a reader never sees a half-written lock.
Every other change to the lock (refresh, release) is a compare-and-swap on its token, made under
`flock` on a guard file beside it, so a release never removes a lock another run took meanwhile.

The record says who holds it (user, machine, pid), since when, at which step, and when its
holder last showed life (`refreshed`): the runner refreshes it at every step and from a
heartbeat thread during long steps, so a working run is never judged stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from pyinfra.api.host import Host

from cerniq_ops import hosts
from cerniq_ops.audit import actor
from cerniq_ops.clock import now_utc, parse_time
from cerniq_ops.errors import LockHeld
from cerniq_ops.settings import Settings

HELD_EXIT = 3


@dataclass(frozen=True)
class LockRecord:
    holder: str
    procedure: str
    version: str | None
    message: str
    since: str
    token: str
    machine: str = ""
    pid: int = 0
    step: str = ""
    refreshed: str = ""
    extra: dict = field(default_factory=dict)  # fields of newer records, kept as they are

    def age_seconds(self, now: datetime | None = None) -> float:
        return _seconds_since(self.since, now)

    def idle_seconds(self, now: datetime | None = None) -> float:
        """Seconds since the holder last refreshed the lock (since it was taken, for old ones)."""
        return _seconds_since(self.refreshed or self.since, now)

    def holder_alive(self) -> bool | None:
        """Whether the holding process runs: known only when it runs on this machine."""
        if not self.pid or self.machine != socket.gethostname():
            return None
        return pid_alive(self.pid)

    def describe(self, env: str) -> str:
        when = self.since.replace("T", " ").replace("Z", " UTC")
        what = f"{self.version or '-'}: {self.message or self.procedure}"
        text = f"deploy lock on {env} held by {self.holder} since {when} ({what})"
        if self.pid:
            text += f", pid {self.pid} on {self.machine}"
        if self.step:
            text += f", at step {self.step}"
        return text

    def liveness(self) -> str:
        """`running`, `not running (the run died)` or `unknown (another machine)`."""
        alive = self.holder_alive()
        if alive is None:
            return f"unknown (held from another machine, {self.machine or '?'})"
        return "running" if alive else "not running: the run died"


def _seconds_since(stamp: str, now: datetime | None) -> float:
    since = parse_time(stamp)
    return ((now or datetime.now(UTC)) - since).total_seconds()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(settings: Settings) -> str:
    return f"{settings.app_root}/deploy.lock"


def new_record(procedure: str, version: str | None, message: str) -> LockRecord:
    now = now_utc()
    return LockRecord(
        actor(),
        procedure,
        version,
        message,
        now,
        secrets.token_hex(8),
        machine=socket.gethostname(),
        pid=os.getpid(),
        refreshed=now,
    )


def to_json_dict(record: LockRecord) -> dict:
    body = asdict(record)
    body.update(body.pop("extra") or {})
    return body


def to_json(record: LockRecord) -> str:
    return json.dumps(to_json_dict(record), sort_keys=True)


def parse(text: str | None) -> LockRecord | None:
    if not text:
        return None
    try:
        data = json.loads(text)
        known = {k: data.pop(k) for k in list(data) if k in LockRecord.__dataclass_fields__}
        return LockRecord(**known, extra=data)
    except (json.JSONDecodeError, TypeError, AttributeError):
        return LockRecord(
            "unknown", "unknown", None, f"unreadable lock: {text[:60]}", now_utc(), ""
        )


# -- commands (pure) ---------------------------------------------------------------------------
def _guarded(path: str, script: str) -> str:
    """SCRIPT run under flock on PATH's guard file (serialises every compare-and-swap)."""
    q = shlex.quote
    return f"mkdir -p {q(path.rsplit('/', 1)[0])} && flock {q(path + '.guard')} sh -c {q(script)}"


def acquire_command(path: str, record: LockRecord) -> str:
    """Shell text: exit 0 having taken the lock, or exit 3 printing the holder's record."""
    temp = f"{path}.{record.token}"
    q = shlex.quote
    return (
        f"mkdir -p {q(path.rsplit('/', 1)[0])} && printf '%s' {q(to_json(record))} > {q(temp)} && "
        f"if ln {q(temp)} {q(path)} 2>/dev/null; then rm -f {q(temp)}; "
        f"else rm -f {q(temp)}; cat {q(path)}; exit {HELD_EXIT}; fi"
    )


def _token_matches(path: str, token: str) -> str:
    q = shlex.quote
    needle = f'"token": "{token}"'
    return f"grep -qF {q(needle)} {q(path)} 2>/dev/null"


def release_command(path: str, token: str) -> str:
    """Shell text: delete the lock only while it carries TOKEN; exit 3 when it does not."""
    q = shlex.quote
    matches = _token_matches(path, token)
    return _guarded(path, f"if {matches}; then rm -f {q(path)}; else exit 3; fi")


def release_seen_command(path: str, seen_text: str) -> str:
    """Shell text: delete the lock only while its content is exactly SEEN_TEXT (by sha256)."""
    q = shlex.quote
    digest = hashlib.sha256(seen_text.encode()).hexdigest()
    return _guarded(
        path,
        f'if [ "$(sha256sum < {q(path)} 2>/dev/null | cut -d" " -f1)" = {digest} ]; '
        f"then rm -f {q(path)}; else exit 3; fi",
    )


def refresh_command(path: str, record: LockRecord) -> str:
    """Shell text: rewrite the lock with RECORD while it still carries RECORD's token."""
    q = shlex.quote
    temp = f"{path}.refresh-{record.token}"
    return _guarded(
        path,
        f"if {_token_matches(path, record.token)}; then "
        f"printf '%s' {q(to_json(record))} > {q(temp)} && mv -f {q(temp)} {q(path)}; "
        f"else exit 3; fi",
    )


# -- on a host ---------------------------------------------------------------------------------
def acquire(
    host: Host,
    settings: Settings,
    record: LockRecord,
    wait: float = 0,
    progress: Callable[[str], None] = lambda _: None,
    poll: float = 2.0,
) -> None:
    """Take the lock; with WAIT seconds, wait that long for a holder to finish (CI queues)."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        ok, out, _ = hosts.sh(host, acquire_command(lock_path(settings), record), check=False)
        if ok:
            return
        held = parse(out)
        if held is None:
            raise LockHeld(f"could not take the deploy lock on {settings.env} ({host.name})")
        dead = held.holder_alive() is False
        if dead or time.monotonic() >= deadline:
            raise LockHeld(held_message(held, settings.env, waited=wait))
        if not told:
            progress(f"waiting up to {wait:g}s for the {held.describe(settings.env)}")
            told = True
        time.sleep(min(poll, max(0.1, deadline - time.monotonic())))


def held_message(held: LockRecord, env: str, waited: float = 0) -> str:
    after = f" (waited {waited:g}s)" if waited else ""
    if held.holder_alive() is False:
        return (
            f"{held.describe(env)}{after}; its holder is not running (the run died): "
            f"run `invoke lock.release --env {env}`, then the same command again"
        )
    return f"{held.describe(env)}{after}; run `invoke lock.status --env {env}`"


def refresh(
    host: Host, settings: Settings, record: LockRecord, step: str | None = None
) -> LockRecord:
    """Show life (and the current STEP) in the lock; LockHeld if it is no longer ours."""
    fresh = replace(record, refreshed=now_utc(), step=record.step if step is None else step)
    ok, _, _ = hosts.sh(host, refresh_command(lock_path(settings), fresh), check=False)
    if not ok:
        raise LockHeld(
            f"the deploy lock on {settings.env} is no longer ours (released by someone else?)"
        )
    return fresh


def release(host: Host, settings: Settings, record: LockRecord) -> bool:
    """Remove the lock only if it is still ours (compare-and-delete on the token)."""
    ok, _, _ = hosts.sh(host, release_command(lock_path(settings), record.token), check=False)
    return ok


def read(host: Host, settings: Settings) -> tuple[str | None, LockRecord | None]:
    """The lock file's text and record (None, None when no lock is held)."""
    text = hosts.read_file(host, lock_path(settings))
    return text, parse(text)


def status(host: Host, settings: Settings) -> LockRecord | None:
    return read(host, settings)[1]


def release_seen(host: Host, settings: Settings, seen_text: str) -> bool:
    """Remove the lock whose text the operator saw, and only that one: False when it changed
    since (its holder refreshed it, or another run took a new lock)."""
    ok, _, _ = hosts.sh(host, release_seen_command(lock_path(settings), seen_text), check=False)
    return ok
