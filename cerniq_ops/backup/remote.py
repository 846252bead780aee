"""What the backup procedures share on the hosts: psql, row counts and checksums on the db host,
the listing of `backup_dir`, the cluster's databases, a restore into a new database, and the
version deployed on the app hosts. Commands run through `hosts.sh` on `_db_host(ctx)`.
"""

from __future__ import annotations

import json
from typing import Any

from cerniq_ops import hosts
from cerniq_ops.backup.cluster import DATABASES_SQL, Database, parse_databases
from cerniq_ops.backup.commands import (
    create_database_sql,
    drop_database_sql,
    from_file_argv,
    pg_restore_argv,
    psql_argv,
    row_counts_statements,
)
from cerniq_ops.backup.manifest import Listing, listing_argv, parse_listing, paths
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context

LONG = 6 * 3600  # seconds a dump or a restore may take before the command is abandoned


def _db_host(ctx: Context):
    return ctx.host(ctx.settings.db_host)


def _psql(ctx: Context, dbname: str, *statements: str, timeout: int = 600) -> str:
    _, out, _ = hosts.sh(
        _db_host(ctx), psql_argv(ctx.settings, dbname, *statements), timeout=timeout
    )
    return out.strip()


def _counts(ctx: Context, dbname: str, snapshot: str | None = None) -> dict[str, int]:
    out = _psql(ctx, dbname, *row_counts_statements(snapshot))
    try:
        return {str(k): int(v) for k, v in json.loads(out.splitlines()[-1]).items()}
    except (ValueError, IndexError, AttributeError) as exc:
        raise StepFailed(f"could not read row counts of {dbname}: {out[:120]!r}") from exc


def _sha256(ctx: Context, path: str) -> tuple[str, int]:
    host = _db_host(ctx)
    _, out, _ = hosts.sh(host, ["sha256sum", path], timeout=LONG)
    _, size, _ = hosts.sh(host, ["stat", "-c", "%s", path])
    return out.split()[0], int(size.strip())


def list_on_host(ctx: Context) -> Listing:
    _, out, _ = hosts.sh(_db_host(ctx), listing_argv(ctx.settings.backup_dir))
    return parse_listing(out)


def databases(ctx: Context) -> list[Database]:
    return parse_databases(_psql(ctx, "postgres", DATABASES_SQL))


def _current_version(ctx: Context) -> str | None:
    if not ctx.settings.app_hosts:
        return None
    text = hosts.read_file(ctx.primary, f"{ctx.settings.app_root}/current-version")
    return (text or "").strip() or None


def _last_line(err: str) -> str:
    return (err.strip().splitlines() or ["no output"])[-1]


def _drop(ctx: Context, name: str) -> None:
    _psql(ctx, "postgres", drop_database_sql(name))


def restore_into(ctx: Context, manifest: dict[str, Any], dbname: str) -> None:
    """Create DBNAME like the source and restore the archive into it; StepFailed on failure."""
    s = ctx.settings
    dump = paths(s.backup_dir, manifest["id"])["dump"]
    _psql(ctx, "postgres", create_database_sql(dbname, manifest.get("database_properties", {})))
    argv = from_file_argv(dump, pg_restore_argv(s, dbname))
    ok, _, err = hosts.sh(_db_host(ctx), argv, check=False, timeout=LONG)
    if not ok:
        raise StepFailed(f"pg_restore of {manifest['id']} into {dbname} failed: {_last_line(err)}")
