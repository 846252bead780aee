"""The deploy lock of an environment: one file on the primary host, taken atomically.

Taking it is `ln` of a fully written temporary file to the lock name: link(2) fails when the
lock exists, so two runners can never both hold it, and a reader never sees a half-written lock.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pyinfra.api.host import Host

from cerniq_ops import hosts
from cerniq_ops.audit import actor, now_utc
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

    def age_seconds(self, now: datetime | None = None) -> float:
        since = datetime.strptime(self.since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return ((now or datetime.now(UTC)) - since).total_seconds()

    def describe(self, env: str) -> str:
        when = self.since.replace("T", " ").replace("Z", " UTC")
        what = f"{self.version or '-'}: {self.message or self.procedure}"
        return f"deploy lock on {env} held by {self.holder} since {when} ({what})"


def lock_path(settings: Settings) -> str:
    return f"{settings.app_root}/deploy.lock"


def new_record(procedure: str, version: str | None, message: str) -> LockRecord:
    return LockRecord(actor(), procedure, version, message, now_utc(), secrets.token_hex(8))


def acquire_command(path: str, record: LockRecord) -> str:
    """Shell text: exit 0 having taken the lock, or exit 3 printing the holder's record."""
    temp = f"{path}.{record.token}"
    body = json.dumps(asdict(record), sort_keys=True)
    q = shlex.quote
    return (
        f"mkdir -p {q(path.rsplit('/', 1)[0])} && printf '%s' {q(body)} > {q(temp)} && "
        f"if ln {q(temp)} {q(path)} 2>/dev/null; then rm -f {q(temp)}; "
        f"else rm -f {q(temp)}; cat {q(path)}; exit {HELD_EXIT}; fi"
    )


def parse(text: str | None) -> LockRecord | None:
    if not text:
        return None
    try:
        return LockRecord(**json.loads(text))
    except (json.JSONDecodeError, TypeError):
        return LockRecord(
            "unknown", "unknown", None, f"unreadable lock: {text[:60]}", now_utc(), ""
        )


def acquire(host: Host, settings: Settings, record: LockRecord) -> None:
    ok, out, _ = hosts.sh(host, acquire_command(lock_path(settings), record), check=False)
    if not ok:
        held = parse(out)
        if held is None:
            raise LockHeld(f"could not take the deploy lock on {settings.env} ({host.name})")
        raise LockHeld(
            f"{held.describe(settings.env)}; run `invoke lock.status --env {settings.env}`"
        )


def release(host: Host, settings: Settings, record: LockRecord) -> None:
    """Remove the lock only if it is still ours (the token matches)."""
    path = shlex.quote(lock_path(settings))
    hosts.sh(host, f"grep -q {shlex.quote(record.token)} {path} 2>/dev/null && rm -f {path}; true")


def status(host: Host, settings: Settings) -> LockRecord | None:
    return parse(hosts.read_file(host, lock_path(settings)))


def force_release(host: Host, settings: Settings) -> LockRecord | None:
    held = status(host, settings)
    hosts.sh(host, ["rm", "-f", lock_path(settings)])
    return held
