"""Pure builders of the command lines and SQL the backups run: no I/O, tested by equality.

pg_dump, pg_restore and psql as the cluster owner (`as_db_superuser`) over the local socket;
the login user's shell does every redirection (`to_file_argv`, `from_file_argv`), reserves a
dump's id (`reserve_argv`) and publishes the finished dump (`publish_argv`); the statements that
count rows, create, close, swap and comment databases; the snapshot session's settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cerniq_ops.settings import Settings

RESERVED_EXIT = 3  # the reservation script: that id's files exist already
# The snapshot-exporting session stays idle in its transaction while the counts and pg_dump
# start on the db host: a server's idle_in_transaction_session_timeout must not end it, and TCP
# keepalives keep a middlebox from dropping it (pg_dump itself sets its own timeouts to 0).
SNAPSHOT_SESSION = (
    "SET idle_in_transaction_session_timeout = 0",
    "SET statement_timeout = 0",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
)
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 6,
}


def as_db_superuser(s: Settings) -> list[str]:
    """The prefix that runs a command as the cluster owner (runuser as root, else sudo -n)."""
    if s.ssh_user == "root":
        return ["runuser", "-u", s.db_os_user, "--"]
    return ["sudo", "-n", "-u", s.db_os_user, "--"]


def cluster_owner_programs(s: Settings) -> list[str]:
    """The only programs run as the cluster owner (what the db hosts' sudoers rule allows)."""
    return [f"{s.pg_bin_dir}/pg_dump", f"{s.pg_bin_dir}/pg_restore", f"{s.pg_bin_dir}/psql"]


def db_port(s: Settings) -> int:
    return int(s.db_host.data.get("db_port", s.postgres_port))


def _local(s: Settings) -> list[str]:
    """libpq options reaching the server over its local socket."""
    return ["-h", s.db_socket_dir, "-p", str(db_port(s))]


def pg_dump_argv(s: Settings, snapshot: str | None = None) -> list[str]:
    """pg_dump of the environment's database in custom format to stdout, as the cluster owner.

    `--create` keeps the database's own properties in the archive (used only by a manual
    `pg_restore --create`); the restores here create the database themselves.
    """
    argv = [*as_db_superuser(s), f"{s.pg_bin_dir}/pg_dump", "--format=custom", "--create"]
    argv.append(f"--compress={s.backup_compress_level}")
    argv += ["--no-password", *_local(s), f"--dbname={s.db_name}"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_restore_argv(s: Settings, dbname: str) -> list[str]:
    """pg_restore of the archive on stdin into the existing database DBNAME; stops at the
    first error. From stdin (one job): the archive is the login user's file, mode 600, which
    the cluster owner cannot open; the login user's shell opens it (`from_file_argv`)."""
    return [
        *as_db_superuser(s),
        f"{s.pg_bin_dir}/pg_restore",
        "--exit-on-error",
        "--no-password",
        *_local(s),
        f"--dbname={dbname}",
    ]


def pg_restore_list_argv(s: Settings) -> list[str]:
    """Read the table of contents of the archive on stdin (proves it readable end to end)."""
    return [*as_db_superuser(s), f"{s.pg_bin_dir}/pg_restore", "--list"]


def psql_argv(s: Settings, dbname: str, *statements: str) -> list[str]:
    """psql running STATEMENTS in one session (each its own -c), unaligned, stop on error."""
    argv = [*as_db_superuser(s), f"{s.pg_bin_dir}/psql", "-X", "-q", "-A", "-t"]
    argv += ["-v", "ON_ERROR_STOP=1", *_local(s), "-d", dbname]
    for statement in statements:
        argv += ["-c", statement]
    return argv


def to_file_argv(path: str, argv: Sequence[str]) -> list[str]:
    """ARGV with its stdout into PATH, created private (umask 077) by the login user."""
    return ["sh", "-c", 'umask 077 && exec "$@" > "$0"', path, *argv]


def from_file_argv(path: str, argv: Sequence[str]) -> list[str]:
    """ARGV reading PATH on its stdin, opened by the login user (who owns the file)."""
    return ["sh", "-c", 'exec "$@" < "$0"', path, *argv]


RESERVE_SCRIPT = (
    'umask 077; set -C; true > "$0" 2>/dev/null || exit ' + str(RESERVED_EXIT) + "; "
    'if [ -e "$1" ] || [ -e "$2" ]; then rm -f "$0"; exit ' + str(RESERVED_EXIT) + "; fi"
)


def reserve_argv(p: dict[str, str]) -> list[str]:
    """Take an id on the host: create its .partial exclusively (noclobber), then make sure no
    dump or manifest of that id appeared meanwhile; exit RESERVED_EXIT when it is taken. Two
    backups started in the same second thus never share a file."""
    return ["sh", "-c", RESERVE_SCRIPT, p["partial"], p["dump"], p["manifest"]]


def publish_argv(p: dict[str, str]) -> list[str]:
    """The finished .partial becomes the dump: link(2) never replaces an existing file."""
    return ["sh", "-c", 'ln "$0" "$1" && rm -f "$0"', p["partial"], p["dump"]]


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings)."""
    return "'" + value.replace("'", "''") + "'"


ROW_COUNTS_SQL = """
SELECT coalesce(json_object_agg(t.name, t.rows ORDER BY t.name), '{}')
FROM (
  SELECT n.nspname || '.' || c.relname AS name,
         (xpath('/row/n/text()', query_to_xml(
            format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
            false, true, '')))[1]::text::bigint AS rows
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r'
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
) t
""".strip()


def row_counts_statements(snapshot: str | None = None) -> list[str]:
    """The rows of every ordinary table (extension tables aside), in SNAPSHOT when given."""
    if snapshot is None:
        return [ROW_COUNTS_SQL]
    return [
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        f"SET TRANSACTION SNAPSHOT {literal(snapshot)}",
        ROW_COUNTS_SQL,
        "COMMIT",
    ]


def create_database_sql(name: str, props: dict[str, str]) -> str:
    """CREATE DATABASE NAME like the source (owner, encoding, locale) from template0."""
    parts = [f"CREATE DATABASE {ident(name)} TEMPLATE template0"]
    if props.get("owner"):
        parts.append(f"OWNER {ident(props['owner'])}")
    if props.get("encoding"):
        parts.append(f"ENCODING {literal(props['encoding'])}")
    if props.get("collate"):
        parts.append(f"LC_COLLATE {literal(props['collate'])}")
    if props.get("ctype"):
        parts.append(f"LC_CTYPE {literal(props['ctype'])}")
    return " ".join(parts)


def drop_database_sql(name: str) -> str:
    return f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)"


def close_database_statements(name: str) -> list[str]:
    """Refuse new connections to NAME, then end its sessions (polled with a 10 s deadline)."""
    return [
        f"ALTER DATABASE {ident(name)} ALLOW_CONNECTIONS false",
        "DO $$ BEGIN FOR i IN 1..100 LOOP "
        "PERFORM pg_stat_clear_snapshot(); "
        "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = {literal(name)} AND pid <> pg_backend_pid(); "
        "PERFORM pg_stat_clear_snapshot(); "
        "IF NOT EXISTS (SELECT 1 FROM pg_stat_activity "
        f"WHERE datname = {literal(name)} AND pid <> pg_backend_pid()) THEN RETURN; END IF; "
        "PERFORM pg_sleep(0.1); END LOOP; "
        f"RAISE EXCEPTION 'sessions on % did not end within 10 s', {literal(name)}; END $$",
    ]


def allow_connections_sql(name: str) -> str:
    return f"ALTER DATABASE {ident(name)} ALLOW_CONNECTIONS true"


def comment_database_sql(name: str, doc: dict[str, Any] | None) -> str:
    """The record a renamed-away database carries (its comment): what it is, since when."""
    text = "NULL" if doc is None else literal(json.dumps(doc, sort_keys=True))
    return f"COMMENT ON DATABASE {ident(name)} IS {text}"


def swap_databases_statements(
    live: str, incoming: str, outgoing: str, outgoing_record: dict[str, Any]
) -> list[str]:
    """Put INCOMING in place of LIVE, which is kept as OUTGOING with OUTGOING_RECORD.

    LIVE is closed first; then in one transaction both renames, INCOMING opened to
    connections and OUTGOING's record commit together or not at all (a killed run leaves
    either the old names or the new ones, never half). OUTGOING stays closed to connections.
    """
    return [
        *close_database_statements(live),
        "BEGIN",
        f"ALTER DATABASE {ident(live)} RENAME TO {ident(outgoing)}",
        f"ALTER DATABASE {ident(incoming)} RENAME TO {ident(live)}",
        allow_connections_sql(live),
        comment_database_sql(outgoing, outgoing_record),
        comment_database_sql(live, None),
        "COMMIT",
    ]
