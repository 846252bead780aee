"""The audit log: one JSON line per step that changes something, appended on each host.

Lines are built by a pure function and pass through redact(): no secret reaches the log.
"""

from __future__ import annotations

import getpass
import json
import shlex
import socket
from typing import Any

from pyinfra.api.host import Host

from cerniq_ops import hosts
from cerniq_ops.clock import now_utc
from cerniq_ops.output import redact
from cerniq_ops.settings import Settings


def actor() -> str:
    """Who runs this: user@machine, or the CI's name for it (CERNIQ_ACTOR overrides)."""
    import os

    return os.environ.get("CERNIQ_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def audit_path(settings: Settings) -> str:
    return f"{settings.app_root}/audit.log"


def audit_line(
    *,
    env: str,
    procedure: str,
    step: str,
    result: str,
    who: str,
    version: str | None,
    detail: str = "",
    at: str | None = None,
    **extra: Any,
) -> str:
    record = {
        "at": at or now_utc(),
        "who": who,
        "env": env,
        "procedure": procedure,
        "version": version,
        "step": step,
        "result": result,
        "detail": detail,
        **extra,
    }
    return redact(json.dumps(record, sort_keys=True))


def append(host: Host, settings: Settings, line: str) -> None:
    path = audit_path(settings)
    hosts.sh(
        host,
        f"mkdir -p {shlex.quote(settings.app_root)} && "
        f"printf '%s\\n' {shlex.quote(line)} >> {shlex.quote(path)}",
    )


def read(host: Host, settings: Settings, limit: int = 50) -> list[dict]:
    """The newest LIMIT audit records of HOST, oldest first (bad lines skipped)."""
    path = shlex.quote(audit_path(settings))
    _, out, _ = hosts.sh(host, f"tail -n {int(limit)} {path} 2>/dev/null; true")
    records = []
    for line in out.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
