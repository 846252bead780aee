"""Seed 10.2 for production: staging first, a pre-migration backup, --dry-run, skip with reason."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from pg_fixtures import REPO_MIGRATIONS, Lines, history, query

from cerniq_ops.errors import StepFailed
from migrations_runner import ProductionGate, RunOptions, migrate, pre_migration_backup

pytest_plugins = ["pg_fixtures"]
pytestmark = pytest.mark.integration

OPTIONS = RunOptions(lock_timeout="2s", statement_timeout="30s", lock_wait=10, actor="t")


def backups(directory: Path) -> list[Path]:
    return sorted(directory.glob("*")) if directory.exists() else []


def test_production_waits_for_staging_then_backs_up_before_migrating(
    make_db, tmp_path: Path
) -> None:
    production, staging = make_db(), make_db()
    gate = ProductionGate(staging=staging, backup_dir=tmp_path / "backup")
    migrate(staging, REPO_MIGRATIONS, options=OPTIONS, target=300, log=Lines())

    with pytest.raises(StepFailed) as exc:
        migrate(production, REPO_MIGRATIONS, options=OPTIONS, gate=gate, log=Lines())
    assert str(exc.value) == (
        "staging gate: not applied on staging: 0301 create_negotiations_indexes, "
        "0302 migrate_legacy_states; run `invoke db.migrate --env staging` first "
        '(or --skip-staging-check --reason "...")'
    )
    assert history(production) == [] and backups(tmp_path / "backup") == []

    migrate(staging, REPO_MIGRATIONS, options=OPTIONS, log=Lines())
    log = Lines()
    assert len(migrate(production, REPO_MIGRATIONS, options=OPTIONS, gate=gate, log=log)) == 4
    [dump] = backups(tmp_path / "backup")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert dump.name.startswith("backup_pre_migration_production_") and dump.suffix == ".dump"
    assert log.has("staging check passed") and log.has(f"pre-migration backup: {dump}")
    assert query(production, "SELECT detail FROM schema_migrations_events WHERE action = 'backup'")
    assert history(production) == [1, 300, 301, 302]


def test_staging_must_have_applied_the_same_file(make_db, tmp_path: Path) -> None:
    production, staging = make_db(), make_db()
    migrate(staging, REPO_MIGRATIONS, options=OPTIONS, log=Lines())
    query(staging, "UPDATE schema_migrations SET checksum = 'other' WHERE version = 302")
    gate = ProductionGate(staging=staging, backup_dir=tmp_path)
    with pytest.raises(StepFailed, match="applied on staging from a different file: 0302"):
        migrate(production, REPO_MIGRATIONS, options=OPTIONS, gate=gate, log=Lines())
    assert history(production) == []


def test_skipping_the_staging_check_needs_a_reason_and_is_recorded(make_db, tmp_path: Path) -> None:
    production = make_db()
    gate = ProductionGate(
        staging=None, backup_dir=tmp_path, skip_staging_reason="INC-42: staging db is down"
    )
    log = Lines()
    migrate(production, REPO_MIGRATIONS, options=OPTIONS, gate=gate, log=log)
    assert log.has("staging check SKIPPED (recorded): INC-42: staging db is down")
    assert query(
        production,
        "SELECT actor, detail FROM schema_migrations_events WHERE action = 'staging_check_skipped'",
    ) == [("t", "INC-42: staging db is down")]
    assert history(production) == [1, 300, 301, 302]


def test_dry_run_lists_what_would_run_and_why_and_changes_nothing(make_db, tmp_path: Path) -> None:
    production, staging = make_db(), make_db()
    migrate(staging, REPO_MIGRATIONS, options=OPTIONS, log=Lines())
    migrate(production, REPO_MIGRATIONS, options=OPTIONS, target=300, log=Lines())
    gate = ProductionGate(staging=staging, backup_dir=tmp_path / "backup")
    log = Lines()
    assert (
        migrate(production, REPO_MIGRATIONS, options=OPTIONS, gate=gate, dry_run=True, log=log)
        == []
    )
    assert log == [
        "dry run: staging check passed: every pending migration is applied on staging",
        f"dry run: would take a pre-migration backup (pg_dump custom) into {tmp_path / 'backup'}",
        "dry run: would apply 0301 create_negotiations_indexes: pending (not in "
        "schema_migrations); non-transactional (autocommit): a failure may leave work behind; "
        "retried up to 3x on lock timeout only while nothing is done yet; lock_timeout 2s, "
        "statement_timeout 30s",
        "dry run: would apply 0302 migrate_legacy_states: pending (not in schema_migrations); "
        "non-transactional (autocommit): a failure may leave work behind; retried up to 3x on "
        "lock timeout only while nothing is done yet; lock_timeout 2s, statement_timeout 30s",
    ]
    assert history(production) == [1, 300]
    assert backups(tmp_path / "backup") == []
    fresh = make_db()
    migrate(fresh, REPO_MIGRATIONS, options=OPTIONS, dry_run=True, log=Lines())
    assert query(fresh, "SELECT to_regclass('schema_migrations')") == [(None,)]


def test_pre_migration_backup_is_a_restorable_private_custom_dump(
    pg_db: dict, tmp_path: Path
) -> None:
    query(pg_db, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)")
    path = pre_migration_backup(pg_db, tmp_path / "b", "staging")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listing = subprocess.run(["pg_restore", "--list", str(path)], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE public precious" in listing.stdout
    assert [p.name for p in (tmp_path / "b").iterdir()] == [path.name]  # no .partial left


def test_failed_backup_stops_with_pg_dumps_reason_and_leaves_no_file(
    pg_db: dict, tmp_path: Path
) -> None:
    with pytest.raises(StepFailed, match="pre-migration backup failed .*does not exist"):
        pre_migration_backup({**pg_db, "dbname": "cq_mig_no_such_db"}, tmp_path, "x")
    assert list(tmp_path.iterdir()) == []
