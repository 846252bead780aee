"""Bench: `backup.create` + `backup.verify` vs the seed's `pg_dump | gzip`, on the same data.

Fills ENV's database on the testbed (default staging) with at least --megabytes of table data,
then, side by side in one run on its db host:
  1. the seed's backup: `pg_dump cerniq | gzip > /backup/...sql.gz` (never checked),
  2. cerniq_ops.backup: create (custom format, row counts in the dump's snapshot, sha256,
     manifest), then verify (checksum, pg_restore --list, test restore + row counts).
Prints times, sizes and the ratios; removes its table and every file it made.

    . .testbed/env && .venv/bin/python bench/bench_backup.py [--env staging] [--megabytes 200]

Needs the testbed up (`invoke testbed.up`). Not run by pytest.
"""

from __future__ import annotations

import argparse
import shlex
import time

import psycopg

from cerniq_ops import backup, hosts, settings
from cerniq_ops.procedure import Context

ROW_BYTES = 150  # roughly, per row of the bench table below (with its index)


def fill(s: settings.Settings, megabytes: int) -> tuple[int, int]:
    """(rows, bytes) of a fresh bench table of at least MEGABYTES."""
    conninfo = s.db_conninfo(s.require_secret("db_password_env"))
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_backup")
        conn.execute(
            "CREATE TABLE bench_backup (id bigint PRIMARY KEY, tenant int, name text,"
            " note text, amount numeric(12,2), created timestamptz)"
        )
        rows, size, batch = 0, 0, 250_000
        while size < megabytes * 1024 * 1024:
            conn.execute(
                "INSERT INTO bench_backup SELECT g, g %% 97, 'contact ' || md5(g::text),"
                " md5((g * 7)::text) || ' ' || repeat(chr((97 + g %% 26)::int), (g %% 40)::int),"
                " (g %% 100000) / 7.0, now() - (g || ' minutes')::interval"
                " FROM generate_series(%s::bigint, %s::bigint) g",
                [rows + 1, rows + batch],
            )
            rows += batch
            size = conn.execute("SELECT pg_total_relation_size('bench_backup')").fetchone()[0]
        conn.execute("VACUUM ANALYZE bench_backup")
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return rows, total


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="staging")
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    s = settings.load(args.env)
    quiet = {"progress": lambda _: None}

    print(f"filling {s.db_name} on {s.db_host.name} with >= {args.megabytes} MB ...", flush=True)
    rows, db_bytes = fill(s, args.megabytes)
    print(f"database: {db_bytes / 2**20:.0f} MB on disk, bench table {rows} rows")
    plain = f"{s.backup_dir}/bench_plain_pg_dump.sql.gz"
    made: list[str] = []
    try:
        with hosts.session(s, [s.db_host]) as state:
            host = state.inventory.get_host(s.db_host.name)
            dump = [
                a
                for a in backup.pg_dump_argv(s)
                if not a.startswith(("--format", "--create", "--compress"))
            ]
            seed_line = f"{shlex.join(dump)} | gzip > {shlex.quote(plain)}"
            _, plain_s = timed(lambda: hosts.sh(host, f"set -e; {seed_line}", timeout=3600))
            plain_size = int(hosts.sh(host, ["stat", "-c", "%s", plain])[1])

        created, create_s = timed(lambda: backup.create(Context(s, "backup.create", **quiet)))
        manifest = created.facts["backup"]
        made.append(manifest["id"])
        ctx = Context(s, "backup.verify", options={"id": manifest["id"]}, **quiet)
        _, verify_s = timed(lambda: backup.verify(ctx))
    finally:
        with hosts.session(s, [s.db_host]) as state:
            host = state.inventory.get_host(s.db_host.name)
            files = [p for i in made for k, p in backup.paths(s.backup_dir, i).items()]
            hosts.sh(host, ["rm", "-f", plain, *files])
        conninfo = s.db_conninfo(s.require_secret("db_password_env"))
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_backup")

    ours_s = create_s + verify_s
    mb = 2**20
    print()
    print(f"{'':34}{'seconds':>10}{'MB':>10}")
    print(f"{'pg_dump | gzip (seed, unchecked)':34}{plain_s:>10.1f}{plain_size / mb:>10.1f}")
    print(f"{'backup.create':34}{create_s:>10.1f}{manifest['size'] / mb:>10.1f}")
    print(f"{'backup.verify':34}{verify_s:>10.1f}")
    print(f"{'backup.create + backup.verify':34}{ours_s:>10.1f}")
    print()
    print(f"ratio create / pg_dump|gzip:            {create_s / plain_s:.2f}")
    print(f"ratio create+verify / pg_dump|gzip:     {ours_s / plain_s:.2f}")
    print(f"ratio size custom / size sql.gz:        {manifest['size'] / plain_size:.2f}")
    tables = len(manifest["row_counts"])
    print(f"verified: {tables} tables, {sum(manifest['row_counts'].values())} rows restored")


if __name__ == "__main__":
    main()
