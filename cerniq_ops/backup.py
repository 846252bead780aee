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

Pure builders (ids, argv, SQL, manifest, retention) come first; then the steps and the step
tuples run by procedure.run; `create_backup(ctx, label)` and `verify_backup(ctx, manifest)` are
what other procedures call.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cerniq_ops import hosts
from cerniq_ops.audit import actor
from cerniq_ops.clients.http import wait_healthy
from cerniq_ops.clock import TIME_FORMAT, now_utc, parse_time
from cerniq_ops.errors import BadInput, CerniqError, StepFailed
from cerniq_ops.procedure import Context, Report, Step, run, step
from cerniq_ops.settings import Settings

LABELS = ("pre-deploy", "pre-migration", "manual", "nightly")  # nightly: ci.workflows
INTERNAL_LABELS = ("pre-restore",)
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[a-z]+-[a-z][a-z0-9-]*\Z", re.ASCII)  # \Z: no newline
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"
VERIFY_SUFFIX = ".verify.json"
PARTIAL_SUFFIX = ".dump.partial"
LONG = 6 * 3600  # seconds a dump or a restore may take before the command is abandoned
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


# -- pure builders ---------------------------------------------------------------------------
def backup_id(now: datetime, env: str, label: str, taken: Iterable[str] = ()) -> str:
    """`20261128T231500Z-production-pre-deploy`; `-2`, `-3`... when that id is already taken."""
    if label not in LABELS + INTERNAL_LABELS:
        raise BadInput(f"unknown backup label '{label}'; choose one of: {', '.join(LABELS)}")
    base = f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{env}-{label}"
    taken = set(taken)
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def check_id(backup_id_: str) -> str:
    """The id itself, or BadInput: ids become file names on the db host."""
    if not ID_PATTERN.match(backup_id_ or "") or "\n" in backup_id_:
        raise BadInput(
            f"invalid backup id '{backup_id_}'; ids look like 20261128T231500Z-production-manual "
            "(see `invoke backup.list`)"
        )
    return backup_id_


def id_env(backup_id_: str) -> str | None:
    """The environment an id names (`20261128T231500Z-production-manual` -> production)."""
    return backup_id_.split("-")[1] if ID_PATTERN.match(backup_id_) else None


def paths(backup_dir: str, backup_id_: str) -> dict[str, str]:
    base = f"{backup_dir.rstrip('/')}/{backup_id_}"
    return {
        "dump": base + DUMP_SUFFIX,
        "manifest": base + MANIFEST_SUFFIX,
        "verify": base + VERIFY_SUFFIX,
        "partial": base + PARTIAL_SUFFIX,
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


DATABASES_SQL = (
    "SELECT coalesce(json_agg(json_build_object('name', datname, 'allow', datallowconn, "
    "'comment', shobj_description(oid, 'pg_database')) ORDER BY datname), '[]')::jsonb "
    "FROM pg_database"  # jsonb: printed on one line
)
RECORD_KINDS = ("previous", "rejected")  # the live data before a restore / a rejected restore


@dataclass(frozen=True)
class Database:
    """A database of the cluster as the restore sees it; RECORD is its cerniq comment."""

    name: str
    allow: bool
    record: dict[str, Any] | None = None

    def holds_data_of(self, db_name: str) -> bool:
        """A database a restore of DB_NAME set aside (the data before it, or a rejected one)."""
        return bool(self.record) and self.record.get("of") == db_name

    @property
    def unconfirmed(self) -> bool:
        """Swapped out by a restore that died before confirming the swap."""
        return (self.record or {}).get("state") == "swapped"


def parse_databases(text: str) -> list[Database]:
    result = []
    for row in json.loads(text.strip().splitlines()[-1] if text.strip() else "[]"):
        record = None
        try:
            parsed = json.loads(row.get("comment") or "null")
            if isinstance(parsed, dict) and parsed.get("cerniq") in RECORD_KINDS:
                record = parsed
        except ValueError:
            pass
        result.append(Database(str(row["name"]), bool(row["allow"]), record))
    return result


def kept_name(db_name: str, kind: str, at: datetime) -> str:
    """`cerniq_previous_20261128t231500z`: where a restore keeps the data it replaced."""
    return f"{db_name}_{kind}_{at.astimezone(UTC).strftime('%Y%m%dt%H%M%Sz')}"[:63]


def due_for_drop(db: Database, now: datetime) -> bool:
    """A kept database whose retention delay has passed (never one a restore still needs)."""
    r = db.record or {}
    return (
        r.get("state") == "kept"
        and bool(r.get("drop_after"))
        and (parse_time(r["drop_after"]) <= now)
    )


def scratch_name(prefix: str, purpose: str, token: str) -> str:
    """A scratch database name: PREFIX + PURPOSE + TOKEN, lower case, within 63 bytes."""
    name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}{purpose}_{token}".lower())
    return name[:63]


def build_manifest(
    *,
    backup_id_: str,
    label: str,
    s: Settings,
    version: str | None,
    size: int,
    sha256: str,
    started: str,
    finished: str,
    server_version: str,
    pg_dump_version: str,
    database: dict[str, str],
    row_counts: dict[str, int],
    who: str,
) -> dict[str, Any]:
    return {
        "id": backup_id_,
        "label": label,
        "env": s.env,
        "database": s.db_name,
        "db_host": s.db_host.name,
        "database_properties": database,
        "version": version,
        "file": paths(s.backup_dir, backup_id_)["dump"],
        "format": "custom",
        "size": size,
        "sha256": sha256,
        "started": started,
        "finished": finished,
        "pg_version": server_version,
        "pg_dump_version": pg_dump_version,
        "row_counts": row_counts,
        "created_by": who,
    }


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Every difference between two {table: rows} maps, one line each (empty: identical)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"{table}: missing after restore ({expected[table]} rows expected)")
        elif table not in expected:
            problems.append(f"{table}: not in the backup's counts ({actual[table]} rows)")
        elif expected[table] != actual[table]:
            problems.append(f"{table}: {actual[table]} rows restored, {expected[table]} dumped")
    return problems


def table_data_entries(listing: str) -> int:
    """How many TABLE DATA entries a `pg_restore --list` table of contents has."""
    return sum(1 for line in listing.splitlines() if " TABLE DATA " in line)


@dataclass
class BackupInfo:
    """One backup as found on the db host: its manifest, verification and dump file."""

    manifest: dict[str, Any]
    verification: dict[str, Any] | None = None
    dump_size: int | None = None

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def finished(self) -> datetime:
        return parse_time(self.manifest["finished"])

    @property
    def intact(self) -> bool:
        """Its dump is there with the size the manifest recorded (not deleted, not truncated)."""
        return self.dump_size is not None and self.dump_size == self.manifest.get("size")

    @property
    def verified(self) -> bool:
        """Verified ok, of this very file (same sha256), and the file is still there whole."""
        v = self.verification or {}
        return self.intact and bool(v.get("ok")) and v.get("sha256") == self.manifest.get("sha256")

    @property
    def state(self) -> str:
        if self.dump_size is None:
            return "dump missing"
        if self.dump_size != self.manifest.get("size"):
            return "size differs"
        if self.verification is None:
            return "not verified"
        return "verified" if self.verified else "verify failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.manifest.items() if k != "row_counts"},
            "tables": len(self.manifest.get("row_counts", {})),
            "state": self.state,
            "verified_at": (self.verification or {}).get("verified_at"),
            "verified_level": (self.verification or {}).get("level"),
        }


@dataclass
class Listing:
    """What backup_dir holds: backups (newest first), and files no manifest accounts for:
    `.partial` dumps (a dump in progress or killed) and orphan dumps (a run died between the
    dump and its manifest), each {file name: mtime epoch}."""

    backups: list[BackupInfo]
    partials: dict[str, int]
    orphans: dict[str, int]

    def leftovers(self, env: str) -> list[str]:
        """The partial and orphan files whose id names ENV (what prune removes), sorted."""
        names = [*self.partials, *self.orphans]
        return sorted(n for n in names if id_env(n.split(".", 1)[0]) == env)


LISTING_SCRIPT = (
    'cd "$0" 2>/dev/null || exit 0; '
    "for f in *" + MANIFEST_SUFFIX + '; do [ -f "$f" ] || continue; '
    "printf 'M\\t%s\\t' \"$f\"; tr -d '\\n' < \"$f\"; printf '\\n'; done; "
    "for f in *" + VERIFY_SUFFIX + '; do [ -f "$f" ] || continue; '
    "printf 'V\\t%s\\t' \"$f\"; tr -d '\\n' < \"$f\"; printf '\\n'; done; "
    "for f in *" + DUMP_SUFFIX + " *" + PARTIAL_SUFFIX + '; do [ -f "$f" ] || continue; '
    'printf \'D\\t%s\\t%s\\n\' "$f" "$(stat -c \'%s %Y\' "$f")"; done'
)


def listing_argv(backup_dir: str) -> list[str]:
    return ["sh", "-c", LISTING_SCRIPT, backup_dir]


def parse_listing(text: str) -> Listing:
    """The listing script's output as a Listing. Files that are not ours (not named like an
    id), or whose manifest does not parse, are skipped."""
    manifests: dict[str, dict[str, Any]] = {}
    verifications: dict[str, dict[str, Any]] = {}
    dumps: dict[str, tuple[int, int]] = {}
    partials: dict[str, int] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        name, _, payload = rest.partition("\t")
        try:
            if kind == "M" and name.endswith(MANIFEST_SUFFIX):
                manifest = json.loads(payload)
                if manifest.get("id") == name.removesuffix(MANIFEST_SUFFIX):
                    parse_time(manifest["finished"])
                    manifests[manifest["id"]] = manifest
            elif kind == "V" and name.endswith(VERIFY_SUFFIX):
                verifications[name.removesuffix(VERIFY_SUFFIX)] = json.loads(payload)
            elif kind == "D" and name.endswith(PARTIAL_SUFFIX):
                if ID_PATTERN.match(name.removesuffix(PARTIAL_SUFFIX)):
                    partials[name] = int(payload.split()[1])
            elif kind == "D" and name.endswith(DUMP_SUFFIX):
                size, mtime = payload.split()
                dumps[name.removesuffix(DUMP_SUFFIX)] = (int(size), int(mtime))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
    backups = [
        BackupInfo(m, verifications.get(i), dumps[i][0] if i in dumps else None)
        for i, m in manifests.items()
    ]
    backups.sort(key=lambda b: (b.manifest["finished"], b.id), reverse=True)
    orphans = {
        i + DUMP_SUFFIX: mtime
        for i, (_, mtime) in dumps.items()
        if i not in manifests and ID_PATTERN.match(i)
    }
    return Listing(backups, partials, orphans)


@dataclass(frozen=True)
class Retention:
    """Keep the newest KEEP_LAST, everything younger than KEEP_DAYS, and the newest verified."""

    keep_last: int
    keep_days: float

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise BadInput(f"retention must keep at least the newest backup (got {self.keep_last})")
        if self.keep_days < 0:
            raise BadInput(f"retention days cannot be negative (got {self.keep_days})")


@dataclass(frozen=True)
class Candidate:
    id: str
    finished: datetime
    verified: bool


def select_for_deletion(
    candidates: Sequence[Candidate], policy: Retention, now: datetime
) -> list[str]:
    """The ids retention lets go, oldest first. Never the newest verified one."""
    ordered = sorted(candidates, key=lambda c: (c.finished, c.id), reverse=True)
    keep = {c.id for c in ordered[: policy.keep_last]}
    cutoff = now - timedelta(days=policy.keep_days)
    keep |= {c.id for c in ordered if c.finished >= cutoff}
    newest_verified = next((c for c in ordered if c.verified), None)
    if newest_verified:
        keep.add(newest_verified.id)
    return [c.id for c in reversed(ordered) if c.id not in keep]


def verified_freshness(
    backups: Sequence[BackupInfo], now: datetime, max_age_hours: float
) -> dict[str, Any]:
    """The newest verified backup, how old its data is and whether that is within MAX_AGE_HOURS.

    What an audit checks: a backup proven restorable whose data is recent enough.
    """
    newest = next((b for b in backups if b.verified), None)
    if newest is None:
        return {"newest_verified": None, "age_hours": None, "fresh": False}
    age = (now - newest.finished).total_seconds() / 3600
    return {"newest_verified": newest.id, "age_hours": round(age, 2), "fresh": age <= max_age_hours}


# -- host helpers ----------------------------------------------------------------------------
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


def _records_error(fn: Step) -> Step:
    """Keep a check's failure in ctx.facts["error"], for the verification record."""

    @functools.wraps(fn)
    def wrapper(ctx: Context) -> str | None:
        try:
            return fn(ctx)
        except CerniqError as exc:
            ctx.facts["error"] = str(exc)
            raise

    return wrapper


def _drop(ctx: Context, name: str) -> None:
    _psql(ctx, "postgres", drop_database_sql(name))


# -- create ----------------------------------------------------------------------------------
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


# -- list ------------------------------------------------------------------------------------
@step(audited=False)
def list_backups(ctx: Context) -> str:
    listing = list_on_host(ctx)
    ctx.facts["backups"] = [b.as_dict() for b in listing.backups]
    ctx.facts["leftovers"] = listing.leftovers(ctx.env)
    ctx.facts["verified"] = verified_freshness(
        listing.backups, datetime.now(UTC), ctx.settings.backup_max_verified_age_hours
    )
    s = ctx.settings
    return f"{len(listing.backups)} backup(s) in {s.backup_dir} on {s.db_host.name}"


# -- verify ----------------------------------------------------------------------------------
def check_checksum_of(ctx: Context, manifest: dict[str, Any], checks: dict[str, Any]) -> str:
    dump = paths(ctx.settings.backup_dir, manifest["id"])["dump"]
    sha, size = _sha256(ctx, dump)
    checks["sha256"] = sha
    if sha != manifest["sha256"] or size != manifest["size"]:
        raise StepFailed(
            f"backup {manifest['id']} is corrupt: {dump} has sha256 {sha[:16]}... and "
            f"{size} bytes, "
            f"its manifest recorded {manifest['sha256'][:16]}... and {manifest['size']} bytes; "
            "do not restore it"
        )
    return f"sha256 {sha[:16]}... matches ({size} bytes)"


def check_archive_of(ctx: Context, manifest: dict[str, Any], checks: dict[str, Any]) -> str:
    dump = paths(ctx.settings.backup_dir, manifest["id"])["dump"]
    argv = from_file_argv(dump, pg_restore_list_argv(ctx.settings))
    ok, out, err = hosts.sh(_db_host(ctx), argv, check=False, timeout=LONG)
    if not ok:
        raise StepFailed(
            f"backup {manifest['id']}: pg_restore cannot read its archive: {_last_line(err)}"
        )
    entries = sum(1 for line in out.splitlines() if line and not line.startswith(";"))
    data = table_data_entries(out)
    tables = len(manifest["row_counts"])
    if data < tables:
        raise StepFailed(
            f"backup {manifest['id']}: the archive has data for {data} tables, "
            f"the manifest counted {tables}"
        )
    checks["entries"] = entries
    return f"pg_restore --list: {entries} entries, data for {data} tables"


def restore_into(ctx: Context, manifest: dict[str, Any], dbname: str) -> None:
    """Create DBNAME like the source and restore the archive into it; StepFailed on failure."""
    s = ctx.settings
    dump = paths(s.backup_dir, manifest["id"])["dump"]
    _psql(ctx, "postgres", create_database_sql(dbname, manifest.get("database_properties", {})))
    argv = from_file_argv(dump, pg_restore_argv(s, dbname))
    ok, _, err = hosts.sh(_db_host(ctx), argv, check=False, timeout=LONG)
    if not ok:
        raise StepFailed(f"pg_restore of {manifest['id']} into {dbname} failed: {_last_line(err)}")


def test_restore_of(ctx: Context, manifest: dict[str, Any], checks: dict[str, Any]) -> str:
    """Restore into a scratch database, compare every table's rows; always drop it."""
    s = ctx.settings
    scratch = scratch_name(s.backup_scratch_prefix, "verify", secrets.token_hex(4))
    try:
        restore_into(ctx, manifest, scratch)
        problems = compare_counts(manifest["row_counts"], _counts(ctx, scratch))
    finally:
        _drop(ctx, scratch)
    if problems:
        raise StepFailed(
            f"backup {manifest['id']}: restored rows differ from the dump's in {len(problems)} "
            f"table(s): {'; '.join(problems[:3])}"
        )
    rows = sum(manifest["row_counts"].values())
    tables = len(manifest["row_counts"])
    checks["restored_tables"] = tables
    return f"restored into {scratch} (dropped): {tables} tables, {rows} rows match"


def write_verification(
    ctx: Context, manifest: dict[str, Any], checks: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """`<id>.verify.json`: ok or not, when, by whom, of which sha256, how deep (level)."""
    record = {
        "id": manifest["id"],
        "ok": error is None,
        "level": "restore" if "restored_tables" in checks else "archive",
        "verified_at": now_utc(),
        "verified_by": actor(),
        "sha256": checks.get("sha256"),
        "checks": checks,
        "error": error,
    }
    path = paths(ctx.settings.backup_dir, manifest["id"])["verify"]
    hosts.write_file(_db_host(ctx), path, json.dumps(record, indent=2, sort_keys=True), "600")
    return record


def verify_backup(ctx: Context, manifest: dict[str, Any], *, restore: bool) -> str:
    """For other procedures (deploy's backups): checksum and `pg_restore --list`, and with
    RESTORE a test restore; the outcome recorded either way. StepFailed when it fails."""
    checks: dict[str, Any] = {}
    parts = []
    try:
        parts.append(check_checksum_of(ctx, manifest, checks))
        parts.append(check_archive_of(ctx, manifest, checks))
        if restore:
            parts.append(test_restore_of(ctx, manifest, checks))
    except CerniqError as exc:
        write_verification(ctx, manifest, checks, str(exc))
        raise
    record = write_verification(ctx, manifest, checks, None)
    return f"verified ({record['level']}): " + "; ".join(parts)


@step(audited=False)
def find_backup(ctx: Context) -> str:
    """The backup named by --id (default: the newest of this environment)."""
    wanted = ctx.options.get("id")
    backups = list_on_host(ctx).backups
    where = f"{ctx.settings.backup_dir} on {ctx.settings.db_host.name}"
    if wanted:
        found = next((b for b in backups if b.id == wanted), None)
        if found is None:
            raise BadInput(
                f"no backup '{wanted}' in {where}; see `invoke backup.list --env {ctx.env}`"
            )
    else:
        found = next((b for b in backups if b.manifest.get("env") == ctx.env), None)
        if found is None:
            raise BadInput(
                f"no backup of {ctx.env} in {where}; run `invoke backup.create --env {ctx.env}`"
            )
    ctx.facts["backup"] = found.manifest
    ctx.facts["backup_id"] = found.id
    ctx.facts.setdefault("checks", {})
    if found.dump_size is None:
        ctx.facts["error"] = f"backup {found.id}: its dump {found.manifest['file']} is missing"
        raise StepFailed(ctx.facts["error"])
    return f"{found.id} ({found.manifest['label']}, {found.manifest['size']} bytes)"


@step()
@_records_error
def check_checksum(ctx: Context) -> str:
    return check_checksum_of(ctx, ctx.facts["backup"], ctx.facts["checks"])


@step()
@_records_error
def check_archive(ctx: Context) -> str:
    return check_archive_of(ctx, ctx.facts["backup"], ctx.facts["checks"])


@step()
@_records_error
def test_restore(ctx: Context) -> str:
    return test_restore_of(ctx, ctx.facts["backup"], ctx.facts["checks"])


@step()
def record_verification(ctx: Context) -> str:
    record = write_verification(ctx, ctx.facts["backup"], ctx.facts["checks"], None)
    ctx.facts["verification"] = record
    return f"{ctx.facts['backup_id']} verified"


def record_failed_verification(ctx: Context) -> str | None:
    """on_failure hook: a failed verification is recorded too (prune and audits read it)."""
    if "backup" not in ctx.facts or ctx.state is None:
        return None
    error = ctx.facts.get("error") or "verification failed"
    ctx.facts["verification"] = write_verification(
        ctx, ctx.facts["backup"], ctx.facts.get("checks", {}), error
    )
    return f"recorded: {ctx.facts['backup_id']} failed verification"


# -- restore ---------------------------------------------------------------------------------
@step()
def refuse_other_environment(ctx: Context) -> str:
    origin = ctx.facts["backup"].get("env")
    if origin == ctx.env:
        return f"backup of {origin}"
    if not ctx.options.get("allow_other_env"):
        raise BadInput(
            f"backup {ctx.facts['backup_id']} is of {origin}, not {ctx.env}; restoring it over "
            f"{ctx.env} needs --allow-other-env"
        )
    return f"backup of {origin} restored over {ctx.env} (--allow-other-env)"


def restore_prefix(s: Settings) -> str:
    """The name every half-done restore database starts with."""
    return scratch_name(s.backup_scratch_prefix, "restore", "")


@step()
def converge_earlier_restore(ctx: Context) -> str:
    """What an earlier restore that died left, put right before anything else: a restore
    database never swapped in is dropped; the live database accepts connections again; a
    swap done but never confirmed is finished (when it swapped in this very backup) or its
    kept data put under the retention delay (another backup)."""
    s = ctx.settings
    dbs = databases(ctx)
    names = {d.name: d for d in dbs}
    if s.db_name not in names:
        kept = [d.name for d in dbs if d.holds_data_of(s.db_name)]
        raise StepFailed(
            f"database {s.db_name} does not exist on {s.db_host.name}"
            + (f"; kept databases: {', '.join(kept)} (rename one back by hand)" if kept else "")
        )
    if ctx.dry_run:
        return "would drop leftover restore databases and re-enable connections if needed"
    repairs = []
    for d in dbs:
        if d.name.startswith(restore_prefix(s)):
            _drop(ctx, d.name)
            repairs.append(f"dropped {d.name}, left by a restore that died before its swap")
    if not names[s.db_name].allow:
        _psql(ctx, "postgres", allow_connections_sql(s.db_name))
        repairs.append(f"{s.db_name} accepts connections again (a restore died while closing it)")
    for d in dbs:
        if not (d.holds_data_of(s.db_name) and d.unconfirmed):
            continue
        r = d.record or {}
        if r.get("backup") == ctx.facts["backup_id"] and r.get("cerniq") == "previous":
            ctx.facts["resume"] = d.name
            ctx.facts["previous_db"] = d.name
            ctx.facts["pre_restore_backup"] = r.get("pre_restore_backup")
            repairs.append(
                f"{s.db_name} was already swapped to {r['backup']} by a run that died before "
                f"confirming it (old data in {d.name}): confirming it now"
            )
        else:
            _keep(ctx, d.name, r)
            repairs.append(f"{d.name} (left unconfirmed by a restore of {r.get('backup')}) kept")
    for line in repairs:
        ctx.repaired(line)
    return "; ".join(repairs) if repairs else "nothing left by an earlier restore"


@step()
def backup_current_database(ctx: Context) -> str:
    if ctx.facts.get("resume"):
        return f"skipped: the swap was done (before it: backup {ctx.facts['pre_restore_backup']})"
    if ctx.dry_run:
        return f"would back up {ctx.settings.db_name} first (pre-restore)"
    manifest = create_backup(ctx, "pre-restore")
    ctx.facts["pre_restore_backup"] = manifest["id"]
    return f"{manifest['id']} ({manifest['size']} bytes)"


@step()
def restore_into_new_database(ctx: Context) -> str:
    s = ctx.settings
    manifest = ctx.facts["backup"]
    if ctx.facts.get("resume"):
        return "skipped: already swapped in"
    if ctx.dry_run:
        return f"would restore {manifest['id']} into a new database, then check its rows"
    restored = restore_prefix(s) + secrets.token_hex(4)
    ctx.facts["restored_db"] = restored
    try:
        restore_into(ctx, manifest, restored)
    except StepFailed as exc:
        raise StepFailed(f"{exc} ({s.db_name} untouched)") from None
    return f"{manifest['id']} restored into {restored}"


@step()
def compare_row_counts(ctx: Context) -> str:
    if ctx.facts.get("resume"):
        return "skipped: compared before the swap"
    if ctx.dry_run:
        return "would compare every table's rows with the backup's manifest"
    manifest = ctx.facts["backup"]
    problems = compare_counts(manifest["row_counts"], _counts(ctx, ctx.facts["restored_db"]))
    if problems:
        raise StepFailed(
            f"restored rows differ from the backup's in {len(problems)} table(s) "
            f"({ctx.settings.db_name} untouched): {'; '.join(problems[:3])}"
        )
    return (
        f"{len(manifest['row_counts'])} tables, {sum(manifest['row_counts'].values())} rows match"
    )


def _record(ctx: Context, kind: str, state: str) -> dict[str, Any]:
    return {
        "cerniq": kind,
        "env": ctx.env,
        "of": ctx.settings.db_name,
        "backup": ctx.facts["backup_id"],
        "pre_restore_backup": ctx.facts.get("pre_restore_backup"),
        "since": now_utc(),
        "state": state,
        "drop_after": None,
    }


def _keep(ctx: Context, name: str, record: dict[str, Any]) -> str:
    """Put NAME under the retention delay (or drop it now when the delay is 0)."""
    hours = ctx.settings.restore_keep_previous_hours
    if hours <= 0:
        _drop(ctx, name)
        return f"{name} dropped (restore_keep_previous_hours = 0)"
    until = (datetime.now(UTC) + timedelta(hours=hours)).strftime(TIME_FORMAT)
    _psql(
        ctx,
        "postgres",
        comment_database_sql(name, {**record, "state": "kept", "drop_after": until}),
    )
    return f"{name} kept until {until} (`invoke backup.drop-previous --env {ctx.env}` drops it now)"


@step()
def swap_databases(ctx: Context) -> str:
    s = ctx.settings
    if ctx.facts.get("resume"):
        return f"skipped: {s.db_name} is {ctx.facts['backup_id']} since the earlier run"
    if ctx.dry_run:
        return f"would end the sessions on {s.db_name} and swap the restored database in"
    restored = ctx.facts["restored_db"]
    previous = kept_name(s.db_name, "previous", datetime.now(UTC))
    record = _record(ctx, "previous", "swapped")
    try:
        _psql(ctx, "postgres", *swap_databases_statements(s.db_name, restored, previous, record))
    except StepFailed:
        _psql(ctx, "postgres", allow_connections_sql(s.db_name))
        raise
    ctx.facts.pop("restored_db")
    ctx.facts["previous_db"] = previous
    return f"{s.db_name} is now {ctx.facts['backup_id']}; the data before it kept in {previous}"


@step()
def check_app_on_restored(ctx: Context) -> str:
    """The restored database takes connections as the app's user, and the app is healthy."""
    s = ctx.settings
    if ctx.dry_run:
        return f"would connect to {s.db_name} as {s.db_user} and check {s.public_url}/health"
    try:
        info = s.db_conninfo(s.require_secret("db_password_env"))
        with psycopg.connect(**info, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise StepFailed(
            f"{s.db_user} cannot use the restored {s.db_name}: {_first(exc)}"
        ) from None
    version = _current_version(ctx)
    if version is None:
        return f"{s.db_user} connects to {s.db_name}; no app deployed to check"
    ok, last, attempts = wait_healthy(s.public_url, s.health_retries, s.health_interval, version)
    if not ok:
        raise StepFailed(f"the app is not healthy on the restored {s.db_name}: {last.detail}")
    return f"{s.db_user} connects; {s.public_url} healthy on {version} (attempt {attempts})"


@step()
def keep_previous_database(ctx: Context) -> str:
    previous = ctx.facts.get("previous_db")
    if ctx.dry_run or not previous:
        hours = ctx.settings.restore_keep_previous_hours
        return f"would keep the data before the restore for {hours:g} h"
    outcome = _keep(ctx, previous, _record(ctx, "previous", "kept"))
    ctx.facts["previous_kept"] = previous if ctx.settings.restore_keep_previous_hours > 0 else None
    return outcome


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def leave_one_live_database(ctx: Context) -> str | None:
    """on_failure hook of restore: whatever failed, the app is left on one complete database
    that accepts connections. Before the swap: the live one (the half-restored one dropped).
    After it (the app was not healthy on the restored data): the data before is swapped back
    in, and the restored one kept as `<db>_rejected_<time>` (the app may have written to it)."""
    if ctx.state is None or ctx.dry_run:
        return None
    s, done = ctx.settings, []
    restored = ctx.facts.pop("restored_db", None)
    if restored:
        _drop(ctx, restored)
        done.append(f"dropped {restored}; {s.db_name} untouched")
    previous = ctx.facts.get("previous_db")
    if previous and ctx.facts.get("failed_step") == "check_app_on_restored":
        rejected = kept_name(s.db_name, "rejected", datetime.now(UTC))
        record = {**_record(ctx, "rejected", "kept"), "pre_restore_backup": None}
        _psql(ctx, "postgres", *swap_databases_statements(s.db_name, previous, rejected, record))
        _keep(ctx, rejected, record)
        done.append(
            f"swapped back: {s.db_name} has its data from before the restore again; "
            f"the restored one kept as {rejected}"
        )
    elif previous:
        done.append(f"{s.db_name} is {ctx.facts['backup_id']}; the data before it is in {previous}")
    live = next((d for d in databases(ctx) if d.name == s.db_name), None)
    if live is not None and not live.allow:
        _psql(ctx, "postgres", allow_connections_sql(s.db_name))
        done.append(f"{s.db_name} accepts connections again")
    ctx.facts["after_failure"] = done
    return "; ".join(done) or None


# -- drop-previous ---------------------------------------------------------------------------
def _kept_of(ctx: Context) -> list[Database]:
    s = ctx.settings
    return [
        d for d in databases(ctx) if d.holds_data_of(s.db_name) and d.record.get("env") == ctx.env
    ]


@step()
def drop_previous_databases(ctx: Context) -> str:
    """Drop the data kept by restores (all of it, or only what is due with `due_only`)."""
    now = datetime.now(UTC)
    kept = _kept_of(ctx)
    unconfirmed = [d.name for d in kept if d.unconfirmed]
    chosen = [d.name for d in kept if not d.unconfirmed]
    if ctx.options.get("due_only"):
        chosen = [d.name for d in kept if due_for_drop(d, now)]
    ctx.facts["dropped_databases"] = chosen
    tail = ""
    if unconfirmed:
        tail = (
            f"; left {', '.join(unconfirmed)}: a restore died before confirming it, "
            "re-run that restore first"
        )
    if ctx.dry_run:
        return f"would drop {', '.join(chosen) or 'nothing'}{tail}"
    for name in chosen:
        _drop(ctx, name)
    return f"dropped {', '.join(chosen) or 'nothing'}{tail}"


# -- prune -----------------------------------------------------------------------------------
@step()
def prune_backups(ctx: Context) -> str:
    """Retention over intact backups; broken ones (dump missing or truncated) and leftover
    files of this environment (orphan dumps without a manifest, .partial files) are removed:
    prune holds the deploy lock, as every run that creates this environment's backups does,
    so none of them is a dump in progress."""
    s = ctx.settings
    keep_last, keep_days = ctx.options.get("keep_last"), ctx.options.get("keep_days")
    policy = Retention(
        s.backup_keep_last if keep_last is None else int(keep_last),
        s.backup_keep_days if keep_days is None else float(keep_days),
    )
    now = datetime.now(UTC)
    listing = list_on_host(ctx)
    mine = [b for b in listing.backups if b.manifest.get("env") == ctx.env]
    intact = [b for b in mine if b.intact]
    broken = [b.id for b in mine if not b.intact]
    doomed = select_for_deletion(
        [Candidate(b.id, b.finished, b.verified) for b in intact], policy, now
    )
    leftovers = listing.leftovers(ctx.env)
    ctx.facts["deleted"] = doomed
    ctx.facts["broken"] = broken
    ctx.facts["kept"] = [b.id for b in intact if b.id not in doomed]
    ctx.facts["leftovers"] = leftovers
    others = len(listing.backups) - len(mine)
    tail = f"; {others} of other environments left alone" if others else ""
    extra = ""
    if broken:
        extra += f"; {len(broken)} broken (dump missing or truncated): {', '.join(broken)}"
    if leftovers:
        extra += f"; {len(leftovers)} leftover file(s): {', '.join(leftovers)}"
    if ctx.dry_run:
        listed = ", ".join(doomed) or "none"
        return f"would delete {len(doomed)} of {len(intact)} backup(s): {listed}{extra}{tail}"
    for backup_id_ in doomed + broken:
        p = paths(s.backup_dir, backup_id_)
        hosts.sh(_db_host(ctx), ["rm", "-f", p["dump"], p["verify"], p["manifest"]])
    remove_leftovers(ctx, leftovers)
    due = [d.name for d in _kept_of(ctx) if due_for_drop(d, now)]
    for name in due:
        _drop(ctx, name)
    ctx.facts["dropped_databases"] = due
    dropped = f"; dropped {', '.join(due)} (retention delay over)" if due else ""
    return f"deleted {len(doomed)}, kept {len(intact) - len(doomed)}{extra}{dropped}{tail}"


# -- procedures ------------------------------------------------------------------------------
CREATE = (take_backup,)
LIST = (list_backups,)
VERIFY = (find_backup, check_checksum, check_archive, test_restore, record_verification)
RESTORE = (
    find_backup,
    refuse_other_environment,
    check_checksum,
    check_archive,
    converge_earlier_restore,
    backup_current_database,
    restore_into_new_database,
    compare_row_counts,
    swap_databases,
    check_app_on_restored,
    keep_previous_database,
)
PRUNE = (prune_backups,)
DROP_PREVIOUS = (drop_previous_databases,)


def create(ctx: Context) -> Report:
    return run(CREATE, ctx)


def list_(ctx: Context) -> Report:
    ctx.locking = False
    return run(LIST, ctx)


def verify(ctx: Context) -> Report:
    """Verification reads backups and uses a scratch database: it does not take the lock."""
    ctx.locking = False
    return run(VERIFY, ctx, on_failure=(record_failed_verification,))


def restore(ctx: Context) -> Report:
    return run(RESTORE, ctx, on_failure=(leave_one_live_database,), describe_state=_live_state)


def _live_state(ctx: Context) -> str:
    return "; ".join(ctx.facts.get("after_failure") or []) or f"{ctx.settings.db_name} untouched"


def prune(ctx: Context) -> Report:
    return run(PRUNE, ctx)


def drop_previous(ctx: Context) -> Report:
    return run(DROP_PREVIOUS, ctx)
