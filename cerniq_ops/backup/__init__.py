"""Backups that are proven restorable (`invoke backup.*`), replacing the seed's `pg_dump | gzip`.

A backup is `pg_dump --format=custom` run on the environment's db host as the cluster owner
(`db_os_user`) over the local socket (no password anywhere), into `backup_dir` on that host. The
procedures log in as the deploy user, which owns `backup_dir`; the only programs run as the
cluster owner are pg_dump, pg_restore and psql (`cluster_owner_programs`, what the sudoers rule
allows), and the login user's shell does every redirection, so every file is the login user's:

    <backup_dir>/<id>.dump            the archive (mode 600)
    <backup_dir>/<id>.manifest.json   label, env, database, version deployed, size, sha256,
                                      started/finished, PostgreSQL versions, row counts (600)
    <backup_dir>/<id>.verify.json     the newest verification of it, ok or not (600)

The row counts are taken in the dump's own snapshot: a REPEATABLE READ transaction exports its
snapshot, the counts and pg_dump (`--snapshot`) both import it. `verify` proves a backup by its
checksum, `pg_restore --list`, and a test restore into a scratch database whose row counts must
equal the manifest's (the scratch database is always dropped). `restore` restores into a new
database, checks it the same way, swaps it in by renaming and keeps the old one (renamed) until
the app is healthy on the restored one and a retention delay has passed (docs/runbooks/backups.md).

One module per concept. Pure builders: commands.py (argv and SQL), manifest.py (ids, paths,
the manifest, the listing), cluster.py (the databases a restore keeps and their records),
retention.py. On the hosts: remote.py (what the procedures share). One module per procedure,
its steps and step tuple run by procedure.run: creating.py (CREATE), listing.py (LIST),
verifying.py (VERIFY), restoring.py (RESTORE), pruning.py (PRUNE, DROP_PREVIOUS).
`create_backup(ctx, label)` and `verify_backup(ctx, manifest)` are what other procedures call.

This module re-exports the names the tasks, other modules and tests use. The procedure modules
have names of their own (creating, not create) so that `backup.create` stays the procedure.
"""

from __future__ import annotations

from cerniq_ops.backup.cluster import (
    DATABASES_SQL,
    Database,
    due_for_drop,
    kept_name,
    parse_databases,
    scratch_name,
)
from cerniq_ops.backup.commands import (
    KEEPALIVES,
    RESERVED_EXIT,
    ROW_COUNTS_SQL,
    SNAPSHOT_SESSION,
    as_db_superuser,
    cluster_owner_programs,
    create_database_sql,
    drop_database_sql,
    from_file_argv,
    pg_dump_argv,
    pg_restore_argv,
    pg_restore_list_argv,
    psql_argv,
    publish_argv,
    reserve_argv,
    row_counts_statements,
    swap_databases_statements,
    to_file_argv,
)
from cerniq_ops.backup.creating import create, create_backup
from cerniq_ops.backup.listing import list_
from cerniq_ops.backup.manifest import (
    LABELS,
    BackupInfo,
    backup_id,
    build_manifest,
    check_id,
    compare_counts,
    id_env,
    listing_argv,
    parse_listing,
    paths,
)
from cerniq_ops.backup.pruning import drop_previous, prune
from cerniq_ops.backup.restoring import (
    RESTORE,
    converge_earlier_restore,
    restore,
    restore_into_new_database,
    restore_prefix,
    swap_databases,
)
from cerniq_ops.backup.retention import (
    Candidate,
    Retention,
    select_for_deletion,
    verified_freshness,
)
from cerniq_ops.backup.verifying import VERIFY, table_data_entries, verify, verify_backup

__all__ = [
    "DATABASES_SQL",
    "KEEPALIVES",
    "LABELS",
    "RESERVED_EXIT",
    "RESTORE",
    "ROW_COUNTS_SQL",
    "SNAPSHOT_SESSION",
    "VERIFY",
    "BackupInfo",
    "Candidate",
    "Database",
    "Retention",
    "as_db_superuser",
    "backup_id",
    "build_manifest",
    "check_id",
    "cluster_owner_programs",
    "compare_counts",
    "converge_earlier_restore",
    "create",
    "create_backup",
    "create_database_sql",
    "drop_database_sql",
    "drop_previous",
    "due_for_drop",
    "from_file_argv",
    "id_env",
    "kept_name",
    "list_",
    "listing_argv",
    "parse_databases",
    "parse_listing",
    "paths",
    "pg_dump_argv",
    "pg_restore_argv",
    "pg_restore_list_argv",
    "prune",
    "psql_argv",
    "publish_argv",
    "reserve_argv",
    "restore",
    "restore_into_new_database",
    "restore_prefix",
    "row_counts_statements",
    "scratch_name",
    "select_for_deletion",
    "swap_databases",
    "swap_databases_statements",
    "table_data_entries",
    "to_file_argv",
    "verified_freshness",
    "verify",
    "verify_backup",
]
