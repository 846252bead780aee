"""SQL text the runner sends, built by pure functions (no connection needed)."""

from __future__ import annotations

import re

HISTORY_TABLE = "schema_migrations"
EVENTS_TABLE = "schema_migrations_events"

# pg_advisory_lock(int4, int4): 'cerq', 'migr'. Session-level, per database.
LOCK_KEY = (0x63657271, 0x6D696772)

CREATE_HISTORY = f"""
CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    version     bigint PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text NOT NULL,
    duration    interval NOT NULL
);
CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    version  bigint,
    detail   text NOT NULL DEFAULT ''
)
"""

HISTORY_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"

SELECT_HISTORY = (
    f"SELECT version, name, checksum, applied_at, applied_by, duration "
    f"FROM {HISTORY_TABLE} ORDER BY version"
)
INSERT_HISTORY = (
    f"INSERT INTO {HISTORY_TABLE} (version, name, checksum, applied_by, duration) "
    f"VALUES (%s, %s, %s, %s, %s)"
)
DELETE_HISTORY = f"DELETE FROM {HISTORY_TABLE} WHERE version = %s"
INSERT_EVENT = (
    f"INSERT INTO {EVENTS_TABLE} (actor, action, version, detail) VALUES (%s, %s, %s, %s)"
)

SET_TIMEOUTS = (
    "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"
)
RESET_TIMEOUTS = "RESET lock_timeout; RESET statement_timeout"

LOCK = "SELECT pg_advisory_lock(%s, %s)"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
LOCK_HOLDER = """
SELECT a.pid, a.application_name, a.usename, a.state, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = %s AND l.objid::bigint = %s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# Indexes left INVALID by a failed CREATE INDEX CONCURRENTLY (not those being built right now).
INVALID_INDEXES = """
SELECT n.nspname, c.relname, t.relname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND i.indexrelid NOT IN (
      SELECT index_relid FROM pg_stat_progress_create_index WHERE index_relid IS NOT NULL)
ORDER BY 1, 2
"""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def drop_invalid_index(schema: str, index: str) -> str:
    """The cleanup for an INVALID index (autocommit: it cannot run in a transaction)."""
    return f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(schema)}.{quote_ident(index)};"


def _check_ident(kind: str, value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{kind} '{value}' must be a plain identifier (optionally schema.name)")
    return value


def batch_update(table: str, set_: str, where: str, key: str, *, first: bool) -> str:
    """One batch of a keyset-paginated backfill: (last key of the batch, rows updated).

    Rows are taken in KEY order after %(after)s (not for the first batch), at most
    %(batch_size)s of them; WHERE is re-checked on each row when it is updated, so a row a
    concurrent writer already fixed is left alone. The key walk guarantees progress even if
    SET leaves a row matching WHERE (the seed's `WHERE new_state IS NULL` loop spins forever
    when the CASE yields NULL).
    """
    table, key = _check_ident("table", table), _check_ident("key", key)
    after = "" if first else f" AND {key} > %(after)s"
    return (
        f"WITH batch AS (SELECT {key} AS batch_key FROM {table} "
        f"WHERE ({where}){after} ORDER BY {key} LIMIT %(batch_size)s), "
        f"updated AS (UPDATE {table} SET {set_} FROM batch "
        f"WHERE {table}.{key} = batch.batch_key AND ({where}) RETURNING 1) "
        f"SELECT (SELECT batch_key FROM batch ORDER BY batch_key DESC LIMIT 1), "
        f"(SELECT count(*) FROM updated)"
    )
