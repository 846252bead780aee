"""Release records: what each deployed version needs later, kept on the primary host as
`{app_root}/releases/<version>.json`: who deployed it and when, the database schema version it
ran with (rollbacks list the migrations applied after it), and the traffic baseline seen while
it was verified (rollback.check compares live latency with it)."""

from __future__ import annotations

import json

from pyinfra.api.host import Host

from cerniq_ops import hosts
from cerniq_ops.metrics import Window
from cerniq_ops.settings import Settings


def release_path(s: Settings, version: str) -> str:
    return f"{s.app_root}/releases/{version}.json"


def new_record(*, version: str, who: str, at: str, schema_version: int, baseline: Window) -> dict:
    latency = baseline.mean_latency
    return {
        "version": version,
        "deployed_at": at,
        "deployed_by": who,
        "schema_version": schema_version,
        "baseline": {
            "requests": int(baseline.requests),
            "error_rate": round(baseline.error_rate, 4),
            "mean_latency_ms": round(latency * 1000, 3) if latency is not None else None,
        },
    }


def schema_version(s: Settings) -> int:
    """The newest migration applied to the environment's database (0 when none)."""
    from migrations_runner import status

    rows = status(s.db_conninfo(s.require_secret("db_password_env")), s.migrations_path)
    return max((r.version for r in rows if r.state in ("applied", "drifted")), default=0)


def write(host: Host, s: Settings, record: dict) -> None:
    hosts.write_file(
        host,
        release_path(s, record["version"]),
        json.dumps(record, indent=2, sort_keys=True) + "\n",
    )


def read(host: Host, s: Settings, version: str) -> dict | None:
    text = hosts.read_file(host, release_path(s, version))
    return json.loads(text) if text else None
