"""`invoke backup.create`: dump the environment's database on its db host, with its manifest.

pg_dump runs as the cluster owner over the local socket into a `.partial` reserved exclusively
under a free id, published as `<id>.dump` once whole; the row counts are taken in the dump's own
snapshot (a REPEATABLE READ session exports it, the counts and `pg_dump --snapshot` import it).
`create_backup(ctx, label)` is what other procedures call inside their own run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from cerniq_ops import hosts
from cerniq_ops.audit import actor
from cerniq_ops.backup.commands import (
    KEEPALIVES,
    SNAPSHOT_SESSION,
    pg_dump_argv,
    publish_argv,
    reserve_argv,
    to_file_argv,
)
from cerniq_ops.backup.manifest import INTERNAL_LABELS, LABELS, backup_id, build_manifest, paths
from cerniq_ops.backup.remote import (
    LONG,
    _counts,
    _current_version,
    _db_host,
    _last_line,
    _sha256,
    list_on_host,
)
from cerniq_ops.clock import TIME_FORMAT, now_utc
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, Report, run, step


def remove_leftovers(ctx: Context, names: Sequence[str]) -> None:
    """Remove NAMES (files of this environment's backup folder a backup run left when it died
    before its manifest). Safe under the deploy lock: every run that creates this
    environment's backups holds it, so none of them is a dump in progress."""
    folder = ctx.settings.backup_dir.rstrip("/")
    for name in names:
        hosts.sh(_db_host(ctx), ["rm", "-f", f"{folder}/{name}"])
        ctx.repaired(f"removed {folder}/{name} (a backup run died before its manifest)")


def _reserve(ctx: Context, label: str, taken: set[str]) -> tuple[str, dict[str, str], datetime]:
    """An id nobody else uses, its .partial created (exclusively) on the host."""
    s, host = ctx.settings, _db_host(ctx)
    for _ in range(20):
        started_at = datetime.now(UTC)
        new_id = backup_id(started_at, s.env, label, taken)
        p = paths(s.backup_dir, new_id)
        ok, _, err = hosts.sh(host, reserve_argv(p), check=False)
        if ok:
            return new_id, p, started_at
        if err.strip():
            raise StepFailed(f"cannot create {p['partial']} on {host.name}: {_last_line(err)}")
        taken.add(new_id)  # another backup took it between our listing and now
    raise StepFailed(f"no free backup id for {label} in {s.backup_dir} on {host.name}")


def create_backup(ctx: Context, label: str) -> dict[str, Any]:
    """Back up the environment's database on its db host; the manifest. StepFailed on failure.

    For other procedures to call inside their own run (deploy: "pre-deploy"; the migration
    gate: "pre-migration"). With ctx.dry_run nothing is done and the plan is returned.
    """
    s = ctx.settings
    if label not in LABELS + INTERNAL_LABELS:
        raise BadInput(f"unknown backup label '{label}'; choose one of: {', '.join(LABELS)}")
    if ctx.dry_run:
        plan = backup_id(datetime.now(UTC), s.env, label)
        return {"id": plan, "label": label, "env": s.env, "dry_run": True, "size": 0}
    host = _db_host(ctx)
    hosts.sh(host, ["mkdir", "-p", s.backup_dir])
    listing = list_on_host(ctx)
    taken = {b.id for b in listing.backups}
    taken |= {n.split(".", 1)[0] for n in [*listing.partials, *listing.orphans]}
    remove_leftovers(ctx, listing.leftovers(s.env))
    version = _current_version(ctx)
    new_id, p, started_at = _reserve(ctx, label, taken)
    conninfo = {**s.db_conninfo(s.require_secret("db_password_env")), **KEEPALIVES}
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            for statement in SNAPSHOT_SESSION:
                conn.execute(statement)
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            props_row = conn.execute(
                "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate,"
                " datctype, current_setting('server_version')"
                " FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            assert props_row is not None
            owner, encoding, collate, ctype, server_version = props_row
            counts = _counts(ctx, s.db_name, snapshot)
            ok, _, err = hosts.sh(
                host,
                to_file_argv(p["partial"], pg_dump_argv(s, snapshot)),
                check=False,
                timeout=LONG,
            )
            conn.execute("COMMIT")
    except psycopg.Error as exc:
        hosts.sh(host, ["rm", "-f", p["partial"]], check=False)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepFailed(f"cannot open the dump's snapshot on {s.db_name}: {first}") from None
    except StepFailed:
        hosts.sh(host, ["rm", "-f", p["partial"]], check=False)
        raise
    if not ok:
        hosts.sh(host, ["rm", "-f", p["partial"]], check=False)
        raise StepFailed(f"pg_dump of {s.db_name} on {host.name} failed: {_last_line(err)}")
    sha, size = _sha256(ctx, p["partial"])
    _, dump_version, _ = hosts.sh(host, [f"{s.pg_bin_dir}/pg_dump", "--version"])
    hosts.sh(host, publish_argv(p))
    manifest = build_manifest(
        backup_id_=new_id,
        label=label,
        s=s,
        version=version,
        size=size,
        sha256=sha,
        started=started_at.strftime(TIME_FORMAT),
        finished=now_utc(),
        server_version=str(server_version),
        pg_dump_version=dump_version.strip(),
        database={"owner": owner, "encoding": encoding, "collate": collate, "ctype": ctype},
        row_counts=counts,
        who=actor(),
    )
    hosts.write_file(host, p["manifest"], json.dumps(manifest, indent=2, sort_keys=True), "600")
    return manifest


@step()
def take_backup(ctx: Context) -> str:
    label = ctx.options.get("label", "manual")
    manifest = create_backup(ctx, label)
    ctx.facts["backup"] = manifest
    if ctx.dry_run:
        s = ctx.settings
        return f"would back up {s.db_name} on {s.db_host.name} as {manifest['id']}"
    tables, sha = len(manifest["row_counts"]), manifest["sha256"][:12]
    return f"{manifest['id']}: {manifest['size']} bytes, {tables} tables, sha256 {sha}"


CREATE = (take_backup,)


def create(ctx: Context) -> Report:
    return run(CREATE, ctx)
