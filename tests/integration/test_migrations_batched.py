"""db.backfill() (seed 10.3): batches that commit one by one, progress, resume after a kill."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pg_fixtures import Lines, history, query, up_sql, write_migration

from cerniq_ops.errors import StepFailed
from migrations_runner import RunOptions, migrate

pytest_plugins = ["pg_fixtures"]
pytestmark = pytest.mark.integration

OPTIONS = RunOptions(lock_timeout="2s", statement_timeout="30s", lock_wait=10, actor="t")

BACKFILL = """
transactional = False


def up(db):
    db.backfill(
        "items",
        set_="state = upper(legacy)",
        where="state IS NULL",
        batch_size=1000,
        pause=0,
        progress_every=0,
    )
"""


def make_items(conninfo: dict, tmp_path: Path, rows: int) -> None:
    write_migration(
        tmp_path,
        "0001_items.py",
        up_sql(
            "CREATE TABLE items (id int PRIMARY KEY, legacy text, state text)",
            f"INSERT INTO items SELECT g, 'v' || g, NULL FROM generate_series(1, {rows}) g",
        ),
    )
    migrate(conninfo, tmp_path, options=OPTIONS, log=Lines())
    write_migration(tmp_path, "0002_backfill.py", BACKFILL)


def test_backfill_updates_every_row_in_batches_with_progress(pg_db: dict, tmp_path: Path) -> None:
    make_items(pg_db, tmp_path, 2500)
    log = Lines()
    migrate(pg_db, tmp_path, options=OPTIONS, log=log)
    progress = [line for line in log if "backfill items" in line]
    assert [line.split(" rows")[0] for line in progress] == [
        "  backfill items: progress: 1000",
        "  backfill items: progress: 2000",
        "  backfill items: progress: 2500",
        "  backfill items: done: 2500",
    ]
    assert query(pg_db, "SELECT count(*) FROM items WHERE state = upper(legacy)") == [(2500,)]
    assert history(pg_db) == [1, 2]


def test_no_row_stays_locked_between_batches(pg_db: dict, tmp_path: Path) -> None:
    """While the backfill is between batches, another session can lock a row it updated."""
    make_items(pg_db, tmp_path, 3000)
    lockable: list[bool] = []
    with psycopg.connect(**pg_db) as other:

        def on_line(line: str) -> None:
            if "progress: 1000 rows" in line:
                try:
                    other.execute("SELECT 1 FROM items WHERE id = 1 FOR UPDATE NOWAIT")
                    lockable.append(True)
                except psycopg.errors.LockNotAvailable:
                    lockable.append(False)
                other.rollback()

        migrate(pg_db, tmp_path, options=OPTIONS, log=on_line)
    assert lockable == [True]


def test_interrupted_backfill_resumes_where_it_stopped(make_db, tmp_path: Path) -> None:
    conninfo = make_db(application_name="cq-mig-backfill")
    make_items(conninfo, tmp_path, 5000)
    with psycopg.connect(**conninfo, autocommit=True) as killer:

        def kill_after_two_batches(line: str) -> None:
            if "progress: 2000 rows" in line:
                killer.execute(
                    # waits (up to 5 s) until the backend is gone: no third batch sneaks in
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE application_name = 'cq-mig-backfill' AND pid <> pg_backend_pid()"
                )

        with pytest.raises(StepFailed, match="terminating connection"):
            migrate(conninfo, tmp_path, options=OPTIONS, log=kill_after_two_batches)
    assert history(conninfo) == [1]
    assert query(conninfo, "SELECT count(*) FROM items WHERE state IS NOT NULL") == [(2000,)]

    log = Lines()
    migrate(conninfo, tmp_path, options=OPTIONS, log=log)
    assert log.has("backfill items: done: 3000 rows in 3 batches")
    assert query(conninfo, "SELECT count(*) FROM items WHERE state = upper(legacy)") == [(5000,)]
    assert history(conninfo) == [1, 2]


def test_backfill_refuses_to_run_inside_a_transaction(pg_db: dict, tmp_path: Path) -> None:
    make_items(pg_db, tmp_path, 10)
    write_migration(tmp_path, "0002_backfill.py", BACKFILL.replace("transactional = False", ""))
    with pytest.raises(StepFailed, match="needs `transactional = False`"):
        migrate(pg_db, tmp_path, options=OPTIONS, log=Lines())
    assert query(pg_db, "SELECT count(*) FROM items WHERE state IS NOT NULL") == [(0,)]
