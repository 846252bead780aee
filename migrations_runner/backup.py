"""The pre-migration backup (seed 10.2 step 2): pg_dump custom format, file mode 600.

Stand-in until the backup module exists; it has the same signature so it can be swapped.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.output import redact, register_secret

Conninfo = str | Mapping[str, Any]

# Keywords that go on pg_dump's command line; the rest go to the child's libpq environment.
_ARGV = {"host": "--host", "port": "--port", "user": "--username", "dbname": "--dbname"}
_ENV = {
    "password": "PGPASSWORD",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "options": "PGOPTIONS",
}


def conninfo_dict(conninfo: Conninfo) -> dict[str, str]:
    """A conninfo string, URI or keyword mapping as one flat dict of strings."""
    if isinstance(conninfo, str):
        return conninfo_to_dict(conninfo)
    return {k: str(val) for k, val in conninfo.items() if val is not None}


def pg_dump_command(conninfo: Conninfo, output: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) for a custom-format dump; the password only in the environment."""
    info = conninfo_dict(conninfo)
    unknown = sorted(set(info) - set(_ARGV) - set(_ENV))
    if unknown:
        raise BadInput(f"pre-migration backup: unsupported connection keyword(s) {unknown}")
    argv = ["pg_dump", "--format=custom", "--no-password", f"--file={output}"]
    argv += [f"{_ARGV[k]}={info[k]}" for k in _ARGV if k in info]
    return argv, {_ENV[k]: info[k] for k in _ENV if k in info}


def backup_file_name(label: str, now: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "db"
    return f"backup_pre_migration_{safe}_{now.strftime('%Y%m%d_%H%M%S')}.dump"


def pre_migration_backup(conninfo: Conninfo, backup_dir: Path | str, label: str) -> Path:
    """Dump the database of CONNINFO into BACKUP_DIR (mode 600); return the file's path.

    pg_dump writes to a `.partial` name created 600 up front, renamed only when it succeeded.
    """
    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    final = backup_dir / backup_file_name(label, datetime.now(UTC))
    partial = final.with_name(final.name + ".partial")
    argv, extra_env = pg_dump_command(conninfo, partial)
    register_secret(extra_env.get("PGPASSWORD"))
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        result = subprocess.run(
            argv, env={**os.environ, **extra_env}, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StepFailed(f"pre-migration backup: cannot run pg_dump: {exc}") from None
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = redact(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
        code = result.returncode
        raise StepFailed(f"pre-migration backup failed (pg_dump exit {code}): {detail}")
    os.chmod(partial, 0o600)
    partial.rename(final)
    return final
