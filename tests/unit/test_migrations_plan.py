"""Pure parts of the migration runner: file discovery, plans, SQL and command builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from cerniq_ops.errors import BadInput, StepFailed
from migrations_runner import sql
from migrations_runner.backup import backup_file_name, pg_dump_command
from migrations_runner.lint import lint_source
from migrations_runner.migration import Migration, discover, new_migration_file, parse_file
from migrations_runner.plan import (
    Applied,
    check_integrity,
    describe,
    make_plan,
    rollback_targets,
    staging_gate_problems,
    status_rows,
)

pytestmark = pytest.mark.unit


def mig(version: int, name: str = "m", checksum: str = "c", **kw: bool) -> Migration:
    return Migration(version, name, Path(f"migrations/{version:04d}_{name}.py"), checksum, **kw)


def test_files_are_ordered_by_numeric_version_not_by_name(tmp_path: Path) -> None:
    for name in ("0300_b.py", "10_a.py", "0002_c.py"):
        (tmp_path / name).write_text("def up(db):\n    pass\n")
    (tmp_path / "helpers.py").write_text("")  # not a migration: ignored
    assert [m.version for m in discover(tmp_path)] == [2, 10, 300]


def test_flags_are_read_without_running_the_file(tmp_path: Path) -> None:
    path = tmp_path / "0001_x.py"
    path.write_text("raise SystemExit('ran')\ntransactional = False\n\ndef up(db):\n    pass\n")
    m = parse_file(path)
    assert (m.transactional, m.reversible, m.name) == (False, False, "x")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_Bad-Name.py": "def up(db): pass"}, "NNNN_lower_snake_name"),
        ({"0001_a.py": "def up(db): pass", "001_b.py": "def up(db): pass"}, "duplicate"),
        ({"0001_a.py": "def down(db): pass"}, r"no up\(db\)"),
        ({"0001_a.py": "transactional = 0\ndef up(db): pass"}, "True or False"),
    ],
)
def test_bad_migration_files_are_bad_input(tmp_path: Path, files: dict, message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(BadInput, match=message):
        discover(tmp_path)


def test_plan_finds_pending_drift_missing_and_out_of_order() -> None:
    files = [mig(1, checksum="a"), mig(2, checksum="CHANGED"), mig(3), mig(5)]
    applied = [Applied(1, "m", "a"), Applied(2, "m", "b"), Applied(4, "gone", "x")]
    plan = make_plan(files, applied)
    assert [m.version for m in plan.pending] == [3, 5]
    assert [(m.version, a.checksum) for m, a in plan.drifted] == [(2, "b")]
    assert [a.version for a in plan.missing] == [4]
    assert [m.version for m in plan.out_of_order] == [3]


def test_drift_error_lists_the_changed_files_and_says_nothing_ran() -> None:
    plan = make_plan([mig(1, "a", "new" * 8)], [Applied(1, "a", "old" * 8)])
    with pytest.raises(StepFailed) as exc:
        check_integrity(plan)
    assert str(exc.value) == (
        "checksum drift: 1 applied migration file(s) changed since they were applied: "
        "0001_a.py (applied oldoldoldold, file now newnewnewnew); restore them (git log -p FILE) "
        "and put the change in a new migration; nothing was run"
    )


def test_clean_plan_passes_integrity() -> None:
    check_integrity(make_plan([mig(1), mig(2)], [Applied(1, "m", "c")]))


def test_rollback_targets_newest_first() -> None:
    files = [mig(1), mig(2), mig(3)]
    applied = [Applied(v, "m", "c") for v in (1, 2, 3)]
    assert [m.version for m in rollback_targets(files, applied)] == [3]
    assert [m.version for m in rollback_targets(files, applied, steps=2)] == [3, 2]
    assert [m.version for m in rollback_targets(files, applied, to=1)] == [3, 2]
    assert [m.version for m in rollback_targets(files, applied, to=0)] == [3, 2, 1]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"steps": 0}, BadInput, "at least 1"),
        ({"steps": 1, "to": 1}, BadInput, "either"),
        ({"to": 7}, BadInput, "not applied"),
    ],
)
def test_rollback_bad_arguments(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        rollback_targets([mig(1)], [Applied(1, "m", "c")], **kwargs)


def test_rollback_refuses_irreversible_and_fileless_migrations() -> None:
    with pytest.raises(StepFailed, match="0001 m: no down"):
        rollback_targets([mig(1, reversible=False)], [Applied(1, "m", "c")])
    with pytest.raises(StepFailed, match="cannot roll back 0002: no file"):
        rollback_targets([mig(1)], [Applied(1, "m", "c"), Applied(2, "m", "c")])


def test_status_rows_show_every_state() -> None:
    rows = status_rows(
        [mig(1, checksum="a"), mig(2, checksum="b"), mig(4)],
        [Applied(1, "m", "a"), Applied(2, "m", "x"), Applied(3, "old", "c")],
    )
    assert [(r.version, r.state) for r in rows] == [
        (1, "applied"),
        (2, "drifted"),
        (3, "missing-file"),
        (4, "pending"),
    ]


def test_staging_gate_needs_each_pending_migration_applied_on_staging_from_the_same_file() -> None:
    pending = [mig(3, "a", "x"), mig(4, "b", "y"), mig(5, "c", "z")]
    staging = [Applied(3, "a", "x"), Applied(4, "b", "OTHER")]
    assert staging_gate_problems(pending, staging) == [
        "not applied on staging: 0005 c",
        "applied on staging from a different file: 0004 b",
    ]
    assert staging_gate_problems(pending[:1], staging) == []


def test_describe_says_what_would_run_and_why() -> None:
    assert describe(mig(300, "t"), "up", "5s", "15min", 3) == (
        "apply 0300 t: pending (not in schema_migrations); in one transaction (all or nothing); "
        "retried up to 3x on lock timeout; lock_timeout 5s, statement_timeout 15min"
    )
    assert describe(mig(301, "i", transactional=False), "down", "5s", "15min", 3) == (
        "roll back 0301 i: applied; rolling back; non-transactional (autocommit): a failure may "
        "leave work behind; retried up to 3x on lock timeout only while nothing is done yet; "
        "lock_timeout 5s, statement_timeout 15min"
    )


def test_new_migration_takes_the_next_version_and_passes_lint() -> None:
    name, text = new_migration_file([mig(1), mig(300)], "add_notes", transactional=False)
    assert name == "0301_add_notes.py"
    assert "transactional = False" in text
    assert lint_source(text, name) == []
    with pytest.raises(BadInput, match="lower_snake_case"):
        new_migration_file([], "Add Notes", True)


def test_batch_update_is_keyset_paginated() -> None:
    first = sql.batch_update("negotiations", "s = 1", "s IS NULL", "id", first=True)
    later = sql.batch_update("negotiations", "s = 1", "s IS NULL", "id", first=False)
    assert first == (
        "WITH batch AS (SELECT id AS batch_key FROM negotiations WHERE (s IS NULL) "
        "ORDER BY id LIMIT %(batch_size)s), updated AS (UPDATE negotiations SET s = 1 FROM batch "
        "WHERE negotiations.id = batch.batch_key AND (s IS NULL) RETURNING 1) "
        "SELECT (SELECT batch_key FROM batch ORDER BY batch_key DESC LIMIT 1), "
        "(SELECT count(*) FROM updated)"
    )
    assert later == first.replace("(s IS NULL) ORDER", "(s IS NULL) AND id > %(after)s ORDER")
    with pytest.raises(ValueError, match="plain identifier"):
        sql.batch_update("t; DROP TABLE x", "s = 1", "true", "id", first=True)


def test_invalid_index_cleanup_is_quoted() -> None:
    assert sql.drop_invalid_index("public", 'we"ird') == (
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."we""ird";'
    )


def test_pg_dump_keeps_the_password_off_the_command_line() -> None:
    info = {"host": "db", "port": 64032, "dbname": "cerniq", "user": "c3rn1q"}
    argv, env = pg_dump_command(
        {**info, "password": "s3cret", "application_name": "x", "connect_timeout": 10},
        Path("/b/f.dump.partial"),
    )
    assert argv == [
        "pg_dump",
        "--format=custom",
        "--no-password",
        "--file=/b/f.dump.partial",
        "--host=db",
        "--port=64032",
        "--username=c3rn1q",
        "--dbname=cerniq",
    ]
    assert env == {"PGPASSWORD": "s3cret", "PGAPPNAME": "x", "PGCONNECT_TIMEOUT": "10"}
    argv, env = pg_dump_command("postgresql://u:pw@h:5/d", Path("f"))
    assert not any("pw" in a for a in argv) and env == {"PGPASSWORD": "pw"}
    with pytest.raises(BadInput, match="unsupported"):
        pg_dump_command({"hostaddr": "1.2.3.4"}, Path("f"))


def test_backup_file_name_is_safe_and_timestamped() -> None:
    from datetime import datetime

    assert backup_file_name("prod/../x y", datetime(2025, 1, 2, 3, 4, 5)) == (
        "backup_pre_migration_prod-..-x-y_20250102_030405.dump"
    )


def test_a_migration_can_raise_its_own_statement_timeout(tmp_path: Path) -> None:
    path = tmp_path / "0400_big_index.py"
    path.write_text(
        'transactional = False\nstatement_timeout = "2h"\n\ndef up(db):\n'
        '    db.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON t (a)")\n'
        "    db.execute('create unique index concurrently \"Idx B\" on t (b)')\n"
    )
    m = parse_file(path)
    assert (m.statement_timeout, m.concurrent_indexes) == ("2h", ("idx_a", "Idx B"))
    assert describe(m, "up", "5s", "15min", 0).endswith(
        "lock_timeout 5s, statement_timeout 2h (the migration's own)"
    )
    assert describe(mig(1), "up", "5s", "15min", 0).endswith("statement_timeout 15min")


@pytest.mark.parametrize("value", ["'2 hours'", "7200", "'2h; DROP TABLE x'", "TIMEOUT"])
def test_a_statement_timeout_that_is_not_a_duration_literal_is_bad_input(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "0400_x.py"
    path.write_text(f"statement_timeout = {value}\n\ndef up(db):\n    pass\n")
    with pytest.raises(BadInput, match=r"0400_x.py:1: `statement_timeout` must be a literal"):
        parse_file(path)


def test_backfill_batches_committed_before_a_failure_are_reported_and_block_retries() -> None:
    from migrations_runner.db import MigrationDB

    db = MigrationDB(None, transactional=False, log=lambda _: None)  # type: ignore[arg-type]
    assert not db.touched and db.unfinished() == []
    db.backfilled["negotiations"] = (3000, 3)
    assert db.touched  # a lock timeout now must not be retried as if nothing was done
    assert db.unfinished() == [
        "backfill negotiations: 3000 rows in 3 batches committed before the failure "
        "(kept; the re-run resumes after them)"
    ]
