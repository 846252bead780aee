"""Backups that are proven restorable (`invoke backup.*`), replacing the seed's `pg_dump | gzip`.

A backup is `pg_dump --format=custom` run on the environment's db host as the database's OS
superuser over the local socket (no password anywhere), into `backup_dir` on that host:

    <backup_dir>/<id>.dump            the archive (mode 600, owned by the db OS user)
    <backup_dir>/<id>.manifest.json   label, env, database, version deployed, size, sha256,
                                      started/finished, PostgreSQL versions, row counts (600)
    <backup_dir>/<id>.verify.json     the newest verification of it, ok or not (600)

The row counts are taken in the dump's own snapshot: a REPEATABLE READ transaction exports its
snapshot, the counts and pg_dump (`--snapshot`) both import it. `verify` proves a backup by its
checksum, `pg_restore --list`, and a test restore into a scratch database whose row counts must
equal the manifest's (the scratch database is always dropped). `restore` restores into a new
database, checks it the same way, and only then swaps it in by renaming, so a failed restore
leaves the live database untouched; a fresh backup is taken first.

Pure builders (ids, argv, SQL, manifest, retention) come first; then the steps and the step
tuples run by procedure.run; `create_backup(ctx, label)` is what other procedures call.
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
from cerniq_ops.audit import actor, now_utc
from cerniq_ops.errors import BadInput, CerniqError, StepFailed
from cerniq_ops.procedure import Context, Report, Step, run, step
from cerniq_ops.settings import Settings

LABELS = ("pre-deploy", "pre-migration", "manual")
INTERNAL_LABELS = ("pre-restore",)
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[a-z]+-[a-z][a-z0-9-]*\Z", re.ASCII)
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"
VERIFY_SUFFIX = ".verify.json"
PARTIAL_SUFFIX = ".dump.partial"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
LONG = 6 * 3600  # seconds a dump or a restore may take before the command is abandoned


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
    if not ID_PATTERN.match(backup_id_ or ""):
        raise BadInput(
            f"invalid backup id '{backup_id_}'; ids look like 20261128T231500Z-production-manual "
            "(see `invoke backup.list`)"
        )
    return backup_id_


def paths(backup_dir: str, backup_id_: str) -> dict[str, str]:
    base = f"{backup_dir.rstrip('/')}/{backup_id_}"
    return {
        "dump": base + DUMP_SUFFIX,
        "manifest": base + MANIFEST_SUFFIX,
        "verify": base + VERIFY_SUFFIX,
        "partial": base + PARTIAL_SUFFIX,
    }


def as_db_superuser(s: Settings) -> list[str]:
    """The prefix that runs a command as the db OS superuser (runuser as root, else sudo)."""
    if s.ssh_user == "root":
        return ["runuser", "-u", s.db_os_user, "--"]
    return ["sudo", "-n", "-u", s.db_os_user, "--"]


def cluster_owner_programs(s: Settings) -> list[str]:
    """The programs the deploy user may run as the cluster owner (the sudo rule)."""
    return [f"{s.pg_bin_dir}/{p}" for p in ("pg_dump", "pg_restore", "psql")]


def db_port(s: Settings) -> int:
    return int(s.db_host.data.get("db_port", s.postgres_port))


def _local(s: Settings) -> list[str]:
    """libpq options reaching the server over its local socket."""
    return ["-h", s.db_socket_dir, "-p", str(db_port(s))]


def pg_dump_argv(s: Settings, snapshot: str | None = None) -> list[str]:
    """pg_dump of the environment's database in custom format to stdout, as the OS superuser.

    `--create` keeps the database's own properties in the archive (used only by a manual
    `pg_restore --create`); the restores here create the database themselves.
    """
    argv = [*as_db_superuser(s), f"{s.pg_bin_dir}/pg_dump", "--format=custom", "--create"]
    argv.append(f"--compress={s.backup_compress_level}")
    argv += ["--no-password", *_local(s), f"--dbname={s.db_name}"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_restore_argv(s: Settings, dump: str, dbname: str, jobs: int | None = None) -> list[str]:
    """pg_restore of DUMP into the existing database DBNAME; stops at the first error.

    DUMP belongs to the deploy user (mode 600): the deploy user's shell opens it and pg_restore,
    run as the cluster owner, reads it on stdin. A stream restores in one job (`--jobs` needs
    a file pg_restore can open itself), so JOBS is not used until the dumps are readable by
    the cluster owner.
    """
    del jobs
    argv = [
        *as_db_superuser(s),
        f"{s.pg_bin_dir}/pg_restore",
        "--exit-on-error",
        "--no-password",
        *_local(s),
        f"--dbname={dbname}",
    ]
    return from_file_argv(dump, argv)


def pg_restore_list_argv(s: Settings, dump: str) -> list[str]:
    """Read the archive's table of contents (proves the archive is readable end to end)."""
    return from_file_argv(dump, [*as_db_superuser(s), f"{s.pg_bin_dir}/pg_restore", "--list"])


def from_file_argv(path: str, argv: Sequence[str]) -> list[str]:
    """ARGV with its stdin from PATH, opened by the login user's shell (the deploy user)."""
    return ["sh", "-c", 'exec "$@" < "$0"', path, *argv]


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


def swap_databases_statements(live: str, restored: str, old: str) -> list[str]:
    """Put RESTORED in place of LIVE (renamed OLD) in one transaction, after closing LIVE.

    New connections to LIVE are refused first, then its sessions are ended (polled with a
    deadline); both renames commit together or not at all.
    """
    return [
        f"ALTER DATABASE {ident(live)} ALLOW_CONNECTIONS false",
        "DO $$ BEGIN FOR i IN 1..100 LOOP "
        "PERFORM pg_stat_clear_snapshot(); "
        "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = {literal(live)} AND pid <> pg_backend_pid(); "
        "PERFORM pg_stat_clear_snapshot(); "
        "IF NOT EXISTS (SELECT 1 FROM pg_stat_activity "
        f"WHERE datname = {literal(live)} AND pid <> pg_backend_pid()) THEN RETURN; END IF; "
        "PERFORM pg_sleep(0.1); END LOOP; "
        f"RAISE EXCEPTION 'sessions on % did not end within 10 s', {literal(live)}; END $$",
        "BEGIN",
        f"ALTER DATABASE {ident(live)} RENAME TO {ident(old)}",
        f"ALTER DATABASE {ident(restored)} RENAME TO {ident(live)}",
        "COMMIT",
    ]


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


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


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
    def verified(self) -> bool:
        """Verified ok, and that verification was of this very file (same sha256)."""
        v = self.verification or {}
        return bool(v.get("ok")) and v.get("sha256") == self.manifest.get("sha256")

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
        }


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


def parse_listing(text: str) -> tuple[list[BackupInfo], dict[str, int]]:
    """(backups newest first, {partial file name: mtime epoch}) from the listing's output.

    Files that are not ours, or whose manifest does not parse, are skipped.
    """
    manifests: dict[str, dict[str, Any]] = {}
    verifications: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
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
                partials[name] = int(payload.split()[1])
            elif kind == "D" and name.endswith(DUMP_SUFFIX):
                sizes[name.removesuffix(DUMP_SUFFIX)] = int(payload.split()[0])
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    backups = [BackupInfo(m, verifications.get(i), sizes.get(i)) for i, m in manifests.items()]
    backups.sort(key=lambda b: (b.manifest["finished"], b.id), reverse=True)
    return backups, partials


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


def list_on_host(ctx: Context) -> tuple[list[BackupInfo], dict[str, int]]:
    _, out, _ = hosts.sh(_db_host(ctx), listing_argv(ctx.settings.backup_dir))
    return parse_listing(out)


def _current_version(ctx: Context) -> str | None:
    if not ctx.settings.app_hosts:
        return None
    text = hosts.read_file(ctx.primary, f"{ctx.settings.app_root}/current-version")
    return (text or "").strip() or None


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
    existing, _ = list_on_host(ctx)
    started_at = datetime.now(UTC)
    new_id = backup_id(started_at, s.env, label, {b.id for b in existing})
    p = paths(s.backup_dir, new_id)
    version = _current_version(ctx)
    hosts.sh(host, ["mkdir", "-p", s.backup_dir])
    conninfo = s.db_conninfo(s.require_secret("db_password_env"))
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
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
        detail = (err.strip().splitlines() or ["no output"])[-1]
        raise StepFailed(f"pg_dump of {s.db_name} on {host.name} failed: {detail}")
    hosts.sh(host, ["chmod", "600", p["partial"]])  # created 600 already (to_file_argv)
    sha, size = _sha256(ctx, p["partial"])
    _, dump_version, _ = hosts.sh(host, [f"{s.pg_bin_dir}/pg_dump", "--version"])
    hosts.sh(host, ["mv", "-f", p["partial"], p["dump"]])
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
    backups, _ = list_on_host(ctx)
    ctx.facts["backups"] = [b.as_dict() for b in backups]
    ctx.facts["verified"] = verified_freshness(
        backups, datetime.now(UTC), ctx.settings.backup_max_verified_age_hours
    )
    return f"{len(backups)} backup(s) in {ctx.settings.backup_dir} on {ctx.settings.db_host.name}"


# -- verify ----------------------------------------------------------------------------------
@step(audited=False)
def find_backup(ctx: Context) -> str:
    """The backup named by --id (default: the newest of this environment)."""
    wanted = ctx.options.get("id")
    backups, _ = list_on_host(ctx)
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
    if found.dump_size is None:
        raise StepFailed(f"backup {found.id}: its dump {found.manifest['file']} is missing")
    ctx.facts["backup"] = found.manifest
    ctx.facts["backup_id"] = found.id
    return f"{found.id} ({found.manifest['label']}, {found.manifest['size']} bytes)"


@step()
@_records_error
def check_checksum(ctx: Context) -> str:
    manifest = ctx.facts["backup"]
    dump = paths(ctx.settings.backup_dir, manifest["id"])["dump"]
    sha, size = _sha256(ctx, dump)
    ctx.facts.setdefault("checks", {})["sha256"] = sha
    if sha != manifest["sha256"] or size != manifest["size"]:
        raise StepFailed(
            f"backup {manifest['id']} is corrupt: {dump} has sha256 {sha[:16]}... and "
            f"{size} bytes, "
            f"its manifest recorded {manifest['sha256'][:16]}... and {manifest['size']} bytes; "
            "do not restore it"
        )
    return f"sha256 {sha[:16]}... matches ({size} bytes)"


@step()
@_records_error
def check_archive(ctx: Context) -> str:
    manifest = ctx.facts["backup"]
    dump = paths(ctx.settings.backup_dir, manifest["id"])["dump"]
    ok, out, err = hosts.sh(_db_host(ctx), pg_restore_list_argv(ctx.settings, dump), check=False)
    if not ok:
        detail = (err.strip().splitlines() or ["no output"])[-1]
        raise StepFailed(f"backup {manifest['id']}: pg_restore cannot read its archive: {detail}")
    entries = sum(1 for line in out.splitlines() if line and not line.startswith(";"))
    data = table_data_entries(out)
    tables = len(manifest["row_counts"])
    if data < tables:
        raise StepFailed(
            f"backup {manifest['id']}: the archive has data for {data} tables, "
            f"the manifest counted {tables}"
        )
    ctx.facts["checks"]["entries"] = entries
    return f"pg_restore --list: {entries} entries, data for {data} tables"


@step()
@_records_error
def test_restore(ctx: Context) -> str:
    """Restore into a scratch database, compare every table's rows; always drop it."""
    s = ctx.settings
    manifest = ctx.facts["backup"]
    scratch = scratch_name(s.backup_scratch_prefix, "verify", secrets.token_hex(4))
    dump = paths(s.backup_dir, manifest["id"])["dump"]
    try:
        _psql(
            ctx, "postgres", create_database_sql(scratch, manifest.get("database_properties", {}))
        )
        ok, _, err = hosts.sh(
            _db_host(ctx), pg_restore_argv(s, dump, scratch), check=False, timeout=LONG
        )
        if not ok:
            detail = (err.strip().splitlines() or ["no output"])[-1]
            raise StepFailed(f"backup {manifest['id']}: test restore failed: {detail}")
        problems = compare_counts(manifest["row_counts"], _counts(ctx, scratch))
    finally:
        _drop(ctx, scratch)
    if problems:
        raise StepFailed(
            f"backup {manifest['id']}: restored rows differ from the dump's in {len(problems)} "
            f"table(s): {'; '.join(problems[:3])}"
        )
    rows = sum(manifest["row_counts"].values())
    ctx.facts["checks"]["restored_tables"] = len(manifest["row_counts"])
    tables = len(manifest["row_counts"])
    return f"restored into {scratch} (dropped): {tables} tables, {rows} rows match"


def _write_verification(ctx: Context, ok: bool, error: str | None) -> dict[str, Any]:
    manifest = ctx.facts["backup"]
    record = {
        "id": manifest["id"],
        "ok": ok,
        "verified_at": now_utc(),
        "verified_by": actor(),
        "sha256": ctx.facts.get("checks", {}).get("sha256"),
        "checks": ctx.facts.get("checks", {}),
        "error": error,
    }
    path = paths(ctx.settings.backup_dir, manifest["id"])["verify"]
    hosts.write_file(_db_host(ctx), path, json.dumps(record, indent=2, sort_keys=True), "600")
    ctx.facts["verification"] = record
    return record


@step()
def record_verification(ctx: Context) -> str:
    _write_verification(ctx, True, None)
    return f"{ctx.facts['backup_id']} verified"


def record_failed_verification(ctx: Context) -> str | None:
    """on_failure hook: a failed verification is recorded too (prune and audits read it)."""
    if "backup" not in ctx.facts or ctx.state is None:
        return None
    _write_verification(ctx, False, ctx.facts.get("error") or "verification failed")
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


@step()
def backup_current_database(ctx: Context) -> str:
    if ctx.dry_run:
        return f"would back up {ctx.settings.db_name} first (pre-restore)"
    manifest = create_backup(ctx, "pre-restore")
    ctx.facts["pre_restore_backup"] = manifest["id"]
    return f"{manifest['id']} ({manifest['size']} bytes)"


@step()
def restore_into_new_database(ctx: Context) -> str:
    s = ctx.settings
    manifest = ctx.facts["backup"]
    token = secrets.token_hex(4)
    restored = scratch_name(s.backup_scratch_prefix, "restore", token)
    if ctx.dry_run:
        return f"would restore {manifest['id']} into a new database, then check its rows"
    ctx.facts["restored_db"] = restored
    ctx.facts["old_db"] = scratch_name(s.backup_scratch_prefix, "old", token)
    dump = paths(s.backup_dir, manifest["id"])["dump"]
    _psql(ctx, "postgres", create_database_sql(restored, manifest.get("database_properties", {})))
    ok, _, err = hosts.sh(
        _db_host(ctx), pg_restore_argv(s, dump, restored), check=False, timeout=LONG
    )
    if not ok:
        detail = (err.strip().splitlines() or ["no output"])[-1]
        raise StepFailed(f"restore of {manifest['id']} failed ({s.db_name} untouched): {detail}")
    return f"{manifest['id']} restored into {restored}"


@step()
def compare_row_counts(ctx: Context) -> str:
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


@step()
def swap_databases(ctx: Context) -> str:
    s = ctx.settings
    if ctx.dry_run:
        return f"would end the sessions on {s.db_name} and swap the restored database in"
    restored, old = ctx.facts["restored_db"], ctx.facts["old_db"]
    try:
        _psql(ctx, "postgres", *swap_databases_statements(s.db_name, restored, old))
    except StepFailed:
        _psql(ctx, "postgres", f"ALTER DATABASE {ident(s.db_name)} ALLOW_CONNECTIONS true")
        raise
    ctx.facts.pop("restored_db")
    _drop(ctx, old)
    before = ctx.facts["pre_restore_backup"]
    return f"{s.db_name} is now {ctx.facts['backup_id']} (its data before: backup {before})"


def drop_restore_leftover(ctx: Context) -> str | None:
    """on_failure hook: drop the half-restored database; the live one was never touched."""
    restored = ctx.facts.get("restored_db")
    if not restored or ctx.state is None:
        return None
    _drop(ctx, restored)
    return f"dropped {restored}"


# -- prune -----------------------------------------------------------------------------------
@step()
def prune_backups(ctx: Context) -> str:
    s = ctx.settings
    keep_last, keep_days = ctx.options.get("keep_last"), ctx.options.get("keep_days")
    policy = Retention(
        s.backup_keep_last if keep_last is None else int(keep_last),
        s.backup_keep_days if keep_days is None else float(keep_days),
    )
    now = datetime.now(UTC)
    backups, partials = list_on_host(ctx)
    mine = [b for b in backups if b.manifest.get("env") == ctx.env]
    doomed = select_for_deletion(
        [Candidate(b.id, b.finished, b.verified) for b in mine], policy, now
    )
    stale = [name for name, mtime in partials.items() if now.timestamp() - mtime > 3600]
    ctx.facts["deleted"] = doomed
    ctx.facts["kept"] = [b.id for b in mine if b.id not in doomed]
    ctx.facts["stale_partials"] = stale
    others = len(backups) - len(mine)
    tail = f"; {others} of other environments left alone" if others else ""
    if ctx.dry_run:
        listed = ", ".join(doomed) or "none"
        return f"would delete {len(doomed)} of {len(mine)} backup(s): {listed}{tail}"
    for backup_id_ in doomed:
        p = paths(s.backup_dir, backup_id_)
        hosts.sh(_db_host(ctx), ["rm", "-f", p["dump"], p["verify"], p["manifest"]])
    for name in stale:
        hosts.sh(_db_host(ctx), ["rm", "-f", f"{s.backup_dir.rstrip('/')}/{name}"])
    return f"deleted {len(doomed)}, kept {len(mine) - len(doomed)}{tail}"


# -- procedures ------------------------------------------------------------------------------
CREATE = (take_backup,)
LIST = (list_backups,)
VERIFY = (find_backup, check_checksum, check_archive, test_restore, record_verification)
RESTORE = (
    find_backup,
    refuse_other_environment,
    check_checksum,
    check_archive,
    backup_current_database,
    restore_into_new_database,
    compare_row_counts,
    swap_databases,
)
PRUNE = (prune_backups,)


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
    return run(RESTORE, ctx, on_failure=(drop_restore_leftover,))


def prune(ctx: Context) -> Report:
    return run(PRUNE, ctx)
