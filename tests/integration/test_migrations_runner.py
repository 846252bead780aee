"""The migration runner against the real PostgreSQL server, one throwaway database per test."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_fixtures import REPO_MIGRATIONS, Lines, history, query, up_sql, write_migration

from cerniq_ops.errors import LockHeld, StepFailed
from migrations_runner import RunOptions, discover, migrate, rollback, status, verify
from migrations_runner.migration import checksum
from migrations_runner.sql import LOCK_KEY

pytest_plugins = ["pg_fixtures"]
pytestmark = pytest.mark.integration

FAST = RunOptions(lock_timeout="2s", statement_timeout="30s", lock_wait=10, actor="tester@ci")


def poll(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_repo_migrations_apply_roll_back_and_reapply(pg_db: dict) -> None:
    assert [m.version for m in migrate(pg_db, REPO_MIGRATIONS, options=FAST, log=Lines())] == [
        1,
        300,
        301,
        302,
    ]
    files = {m.version: m for m in discover(REPO_MIGRATIONS)}
    rows = query(
        pg_db, "SELECT version, name, checksum, applied_by, duration FROM schema_migrations"
    )
    for version, name, digest, applied_by, duration in rows:
        assert (name, digest) == (files[version].name, files[version].checksum)
        assert applied_by == "tester@ci" and duration.total_seconds() > 0
    # seed 9.2 reads the newest version this way
    assert query(pg_db, "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1") == [
        (302,)
    ]
    indexes = query(
        pg_db,
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname LIKE 'idx_negotiations_%' ORDER BY 1",
    )
    assert indexes == [("idx_negotiations_contact_id", True), ("idx_negotiations_tenant_id", True)]
    assert [r.state for r in status(pg_db, REPO_MIGRATIONS)] == ["applied"] * 4

    assert [m.version for m in rollback(pg_db, REPO_MIGRATIONS, options=FAST, log=Lines())] == [302]
    assert history(pg_db) == [1, 300, 301]
    assert query(pg_db, "SELECT count(*) FROM pg_attribute WHERE attname = 'new_state'") == [(0,)]

    rolled = rollback(pg_db, REPO_MIGRATIONS, to=0, options=FAST, log=Lines())
    assert [m.version for m in rolled] == [301, 300, 1]
    assert history(pg_db) == []
    assert query(pg_db, "SELECT to_regclass('tenants'), to_regclass('negotiations')") == [
        (None, None)
    ]
    assert len(migrate(pg_db, REPO_MIGRATIONS, options=FAST, log=Lines())) == 4


def test_legacy_states_are_migrated_as_the_seed_maps_them(pg_db: dict) -> None:
    migrate(pg_db, REPO_MIGRATIONS, options=FAST, target=301, log=Lines())
    query(
        pg_db,
        """
        WITH t AS (INSERT INTO tenants (name) VALUES ('acme') RETURNING id),
             c AS (INSERT INTO contacts (tenant_id, name) SELECT id, 'ana' FROM t RETURNING id)
        INSERT INTO negotiations (tenant_id, contact_id, current_state, old_state)
        SELECT t.id, c.id, 'closed', s FROM t, c,
               unnest(ARRAY['pending', 'active', 'won', NULL]) AS s
        """,
    )
    migrate(pg_db, REPO_MIGRATIONS, options=FAST, log=Lines())
    mapped = query(pg_db, "SELECT old_state, new_state FROM negotiations ORDER BY 1 NULLS LAST")
    assert mapped == [
        ("active", "needs_analysis"),
        ("pending", "initial"),
        ("won", "won"),  # ELSE old_state
        (None, "closed"),  # NULL: current_state (the seed's `ELSE old_state` looped forever)
    ]
    assert query(
        pg_db,
        "SELECT is_nullable FROM information_schema.columns "
        "WHERE table_name = 'negotiations' AND column_name = 'new_state'",
    ) == [("NO",)]


def test_failure_mid_migration_leaves_no_partial_schema_and_history_unchanged(
    pg_db: dict, tmp_path: Path
) -> None:
    write_migration(tmp_path, "0001_ok.py", up_sql("CREATE TABLE a (x int)"))
    write_migration(
        tmp_path,
        "0002_broken.py",
        """
        def up(db):
            db.execute("CREATE TABLE b (x int)")
            db.execute("INSERT INTO b VALUES (1)")
            db.execute("SELECT 1 / 0")
        """,
    )
    write_migration(tmp_path, "0003_later.py", up_sql("CREATE TABLE c ()"))
    with pytest.raises(StepFailed) as exc:
        migrate(pg_db, tmp_path, options=FAST, log=Lines())
    message = str(exc.value)
    assert message.startswith("up() of 0002 broken failed at 0002_broken.py:4: division by zero")
    assert "transaction was rolled back: nothing of it remains" in message
    assert history(pg_db) == [1]
    assert query(pg_db, "SELECT to_regclass('a'), to_regclass('b'), to_regclass('c')") == [
        ("a", None, None)
    ]
    events = query(pg_db, "SELECT action, version FROM schema_migrations_events ORDER BY id")
    assert events == [("applied", 1), ("up_failed", 2)]


def test_second_runner_fails_after_its_wait_naming_the_lock_holder(pg_db: dict) -> None:
    holder_info = {**pg_db, "application_name": "ana-laptop-migrate"}
    with psycopg.connect(**holder_info, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        started = time.monotonic()
        with pytest.raises(LockHeld) as exc:
            migrate(
                pg_db,
                REPO_MIGRATIONS,
                options=RunOptions(lock_wait=0.5, actor="t"),
                log=Lines(),
            )
        waited = time.monotonic() - started
        pid = holder.info.backend_pid
    assert 0.5 <= waited < 5
    assert exc.value.exit_code == 3
    assert f"held by pid {pid} (application_name 'ana-laptop-migrate', user postgres" in str(
        exc.value
    )
    assert f"pg_terminate_backend({pid})" in str(exc.value)
    assert history(pg_db) == []


def test_two_concurrent_runners_apply_each_migration_once(pg_db: dict, tmp_path: Path) -> None:
    write_migration(
        tmp_path,
        "0001_slow_table.py",
        up_sql("CREATE TABLE t (x int)", "SELECT pg_sleep(0.5)"),
    )
    write_migration(tmp_path, "0002_row.py", up_sql("INSERT INTO t VALUES (1)"))
    results: dict[str, Any] = {}
    first_log, second_log = Lines(), Lines()

    def run(name: str, log: Lines) -> None:
        try:
            results[name] = [m.version for m in migrate(pg_db, tmp_path, options=FAST, log=log)]
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            results[name] = exc

    first = threading.Thread(target=run, args=("first", first_log))
    first.start()
    poll(lambda: first_log.has("apply 0001"), what="the first runner to start 0001")
    second = threading.Thread(target=run, args=("second", second_log))
    second.start()
    poll(
        lambda: (
            query(
                pg_db,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            )
            == [(1,)]
        ),
        what="the second runner to wait on the migration lock",
    )
    first.join(30)
    second.join(30)
    assert results == {"first": [1, 2], "second": []}
    assert second_log.has("database is up to date")
    assert history(pg_db) == [1, 2]
    assert query(pg_db, "SELECT count(*) FROM t") == [(1,)]


def test_drift_is_refused_with_the_files_listed_and_nothing_runs(
    pg_db: dict, tmp_path: Path
) -> None:
    first = write_migration(tmp_path, "0001_a.py", up_sql("CREATE TABLE a ()"))
    migrate(pg_db, tmp_path, options=FAST, log=Lines())
    applied_checksum = checksum(first.read_bytes())
    first.write_text(first.read_text() + "    db.execute('CREATE TABLE a2 ()')\n")
    write_migration(tmp_path, "0002_b.py", up_sql("CREATE TABLE b ()"))

    with pytest.raises(StepFailed) as exc:
        migrate(pg_db, tmp_path, options=FAST, log=Lines())
    assert "checksum drift: 1 applied migration file(s) changed" in str(exc.value)
    assert f"0001_a.py (applied {applied_checksum[:12]}" in str(exc.value)
    assert str(exc.value).endswith("nothing was run")
    assert history(pg_db) == [1]
    assert query(pg_db, "SELECT to_regclass('b')") == [(None,)]
    assert [(r.version, r.state) for r in status(pg_db, tmp_path)] == [
        (1, "drifted"),
        (2, "pending"),
    ]
    report = verify(pg_db, tmp_path)
    assert not report.ok and "0001_a.py" in report.problems[0]
    with pytest.raises(StepFailed, match="checksum drift: .*0001_a.py"):
        rollback(pg_db, tmp_path, options=FAST, log=Lines())
    assert history(pg_db) == [1]


def test_non_transactional_failure_says_what_is_left_and_how_to_clean_it(
    pg_db: dict, tmp_path: Path
) -> None:
    write_migration(
        tmp_path,
        "0001_table.py",
        up_sql("CREATE TABLE t (x int)", "INSERT INTO t VALUES (1), (1)"),
    )
    write_migration(
        tmp_path,
        "0002_indexes.py",
        """
        transactional = False


        def up(db):
            db.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_t_x ON t (x)")
            db.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_t_x_unique ON t (x)")
        """,
    )
    log = Lines()
    with pytest.raises(StepFailed) as exc:
        migrate(pg_db, tmp_path, options=FAST, log=log)
    cleanup = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_t_x_unique";'
    message = str(exc.value)
    assert message.startswith("up() of 0002 indexes failed at 0002_indexes.py:6: could not create")
    assert "non-transactional: 1 statement(s) before the failure stayed applied" in message
    assert f"left behind INVALID index(es), clean with: {cleanup}" in message
    assert log.has("completed before the failure (still applied): CREATE INDEX CONCURRENTLY")
    assert log.has("left behind: INVALID index public.idx_t_x_unique on t")
    assert history(pg_db) == [1]

    # the next run drops the INVALID index its own pending migration builds, and builds again
    assert not verify(pg_db, tmp_path).ok
    again = Lines()
    with pytest.raises(StepFailed, match="could not create unique index"):
        migrate(pg_db, tmp_path, options=FAST, log=again)
    assert again.has(
        "repaired: dropped INVALID index public.idx_t_x_unique on t, left by an interrupted "
        "build of 0002 indexes; it is built again"
    )

    query(pg_db, "DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")
    fixed = Lines()
    assert [m.version for m in migrate(pg_db, tmp_path, options=FAST, log=fixed)] == [2]
    assert fixed.has("repaired: dropped INVALID index public.idx_t_x_unique")
    assert query(pg_db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
    assert verify(pg_db, tmp_path).ok


def test_an_invalid_index_no_pending_migration_builds_is_refused(
    pg_db: dict, tmp_path: Path
) -> None:
    query(pg_db, "CREATE TABLE u (x int); INSERT INTO u VALUES (1), (1)")
    with pytest.raises(psycopg.Error):
        query(pg_db, "CREATE UNIQUE INDEX CONCURRENTLY idx_someone_elses ON u (x)")
    write_migration(tmp_path, "0001_table.py", up_sql("CREATE TABLE t (x int)"))
    with pytest.raises(StepFailed, match="found INVALID index public.idx_someone_elses on u"):
        migrate(pg_db, tmp_path, options=FAST, log=Lines())
    assert history(pg_db) == []


def test_a_migration_raises_its_own_statement_timeout(pg_db: dict, tmp_path: Path) -> None:
    short = RunOptions(lock_timeout="2s", statement_timeout="200ms", lock_wait=10, actor="t")
    write_migration(tmp_path, "0001_slow.py", up_sql("SELECT pg_sleep(0.6)"))
    with pytest.raises(StepFailed, match="canceling statement due to statement timeout"):
        migrate(pg_db, tmp_path, options=short, log=Lines())
    (tmp_path / "0001_slow.py").unlink()
    write_migration(
        tmp_path,
        "0001_slow.py",
        'statement_timeout = "5s"\n\n\n' + up_sql("SELECT pg_sleep(0.6)", "SHOW statement_timeout"),
    )
    log = Lines()
    assert [m.version for m in migrate(pg_db, tmp_path, options=short, log=log)] == [1]
    assert log.has("apply 0001 slow (transactional, statement_timeout 5s (the migration's own))")
    assert query(pg_db, "SHOW statement_timeout") != [("200ms",)]  # reset after it


def test_a_backfill_cut_short_reports_the_rows_it_committed(pg_db: dict, tmp_path: Path) -> None:
    query(pg_db, "CREATE TABLE b (id int PRIMARY KEY, v int); "
                 "INSERT INTO b SELECT g, NULL FROM generate_series(1, 50) g")  # fmt: skip
    write_migration(
        tmp_path,
        "0001_fill.py",
        """
        transactional = False


        def up(db):
            db.backfill("b", set_="v = CASE WHEN id = 35 THEN 1 / (id - 35) ELSE 1 END",
                        where="v IS NULL", batch_size=10, pause=0)
        """,
    )
    log = Lines()
    with pytest.raises(StepFailed) as exc:
        migrate(pg_db, tmp_path, options=FAST, log=log)
    expected = (
        "backfill b: 30 rows in 3 batches committed before the failure "
        "(kept; the re-run resumes after them)"
    )
    assert expected in str(exc.value) and log.has(expected)
    assert query(pg_db, "SELECT count(*) FROM b WHERE v = 1") == [(30,)]


@pytest.mark.parametrize(
    ("transactional", "undone"), [(True, "rolled back"), (False, "nothing was done yet")]
)
def test_lock_timeout_is_retried_with_backoff_until_the_table_is_free(
    pg_db: dict, tmp_path: Path, transactional: bool, undone: str
) -> None:
    write_migration(tmp_path, "0001_t.py", up_sql("CREATE TABLE t (x int)"))
    migrate(pg_db, tmp_path, options=FAST, log=Lines())
    write_migration(
        tmp_path,
        "0002_add.py",
        up_sql("ALTER TABLE t ADD COLUMN IF NOT EXISTS y int", transactional=transactional),
    )
    options = RunOptions(lock_timeout="100ms", retries=5, backoff=0.2, lock_wait=5, actor="t")
    log, result = Lines(), {}
    with psycopg.connect(**pg_db) as blocker:  # a reader in an open transaction
        blocker.execute("SELECT * FROM t")
        runner = threading.Thread(
            target=lambda: result.update(done=migrate(pg_db, tmp_path, options=options, log=log))
        )
        runner.start()
        poll(lambda: log.has("retry 1/5"), what="a first lock timeout")
        blocker.rollback()
    runner.join(30)
    assert [m.version for m in result["done"]] == [2]
    line = f"lock timeout (100ms) at 0002_add.py:{5 if not transactional else 2}; {undone}; "
    assert log.has(line + "retry 1/5 in 0.2s")
    assert history(pg_db) == [1, 2]


def test_autocommit_migration_is_not_retried_once_a_statement_is_done(
    pg_db: dict, tmp_path: Path
) -> None:
    write_migration(tmp_path, "0001_t.py", up_sql("CREATE TABLE t (x int)"))
    migrate(pg_db, tmp_path, options=FAST, log=Lines())
    write_migration(
        tmp_path,
        "0002_two_steps.py",
        up_sql("CREATE TABLE u (x int)", "ALTER TABLE t ADD COLUMN y int", transactional=False),
    )
    options = RunOptions(lock_timeout="50ms", retries=3, backoff=0.05, actor="t")
    log = Lines()
    with psycopg.connect(**pg_db) as blocker:
        blocker.execute("SELECT * FROM t")
        with pytest.raises(StepFailed, match="1 statement.s. before the failure stayed applied"):
            migrate(pg_db, tmp_path, options=options, log=log)
    assert not log.has("retry")
    assert log.has("completed before the failure (still applied): CREATE TABLE u (x int)")
    assert history(pg_db) == [1]


def test_lock_timeout_retries_exhausted_fail_cleanly(pg_db: dict, tmp_path: Path) -> None:
    write_migration(tmp_path, "0001_t.py", up_sql("CREATE TABLE t (x int)"))
    migrate(pg_db, tmp_path, options=FAST, log=Lines())
    write_migration(tmp_path, "0002_add.py", up_sql("ALTER TABLE t ADD COLUMN y int"))
    options = RunOptions(lock_timeout="50ms", retries=2, backoff=0.05, actor="t")
    log = Lines()
    with psycopg.connect(**pg_db) as blocker:
        blocker.execute("SELECT * FROM t")
        with pytest.raises(StepFailed, match="canceling statement due to lock timeout"):
            migrate(pg_db, tmp_path, options=options, log=log)
    assert log.has("retry 2/2") and not log.has("retry 3/")
    assert history(pg_db) == [1]


def test_every_migration_runs_under_the_configured_timeouts(pg_db: dict, tmp_path: Path) -> None:
    write_migration(
        tmp_path,
        "0001_seen.py",
        """
        def up(db):
            db.execute(
                "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout, "
                "current_setting('statement_timeout') AS statement_timeout"
            )
        """,
    )
    write_migration(tmp_path, "0002_slow.py", up_sql("SELECT pg_sleep(10)"))
    options = RunOptions(lock_timeout="1234ms", statement_timeout="300ms", actor="t")
    started = time.monotonic()
    with pytest.raises(StepFailed, match="canceling statement due to statement timeout"):
        migrate(pg_db, tmp_path, options=options, log=Lines())
    assert time.monotonic() - started < 5
    assert query(pg_db, "SELECT * FROM seen") == [("1234ms", "300ms")]
    assert history(pg_db) == [1]


def test_unreachable_database_is_one_line_naming_it_without_the_password(pg_db: dict) -> None:
    missing = {**pg_db, "dbname": "cq_mig_missing", "password": "pw-never-shown"}
    with pytest.raises(StepFailed) as exc:
        status(missing, REPO_MIGRATIONS)
    message = str(exc.value)
    assert message.startswith(
        f"cannot connect to the database {pg_db['host']}:{pg_db['port']}/cq_mig_missing as postgres"
    )
    assert "pw-never-shown" not in message and "\n" not in message
