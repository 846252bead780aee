"""`invoke db.*` end to end: settings -> conninfo (password from its variable) -> real server.

The environments point at throwaway local databases through a generated testbed folder
(CERNIQ_TARGET=testbed, CERNIQ_TESTBED_DIR), the way the testbed describes its db hosts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pg_fixtures import ADMIN, REPO_MIGRATIONS, history

pytest_plugins = ["pg_fixtures"]
pytestmark = pytest.mark.integration

PROJECT = REPO_MIGRATIONS.parent
SECRET = "not-printed-s3cret"


@pytest.fixture
def envs(make_db, tmp_path: Path) -> dict:
    """staging and production settings pointing at two fresh local databases."""
    dbs = {}
    for env in ("staging", "production"):
        dbs[env] = make_db()
        (tmp_path / "tb" / "inventories").mkdir(parents=True, exist_ok=True)
        (tmp_path / "tb" / "group_data").mkdir(parents=True, exist_ok=True)
        host = (ADMIN["host"], {"db_primary": True, "db_port": ADMIN["port"]})
        (tmp_path / "tb" / "inventories" / f"{env}.py").write_text(f"db_servers = [{host!r}]\n")
        (tmp_path / "tb" / "group_data" / f"{env}.py").write_text(
            f"db_name = {dbs[env]['dbname']!r}\ndb_user = {ADMIN['user']!r}\n"
            f"backup_dir = {str(tmp_path / 'backup')!r}\nmigration_lock_timeout = '2s'\n"
            "migration_backup = 'local'\n"
        )
    return dbs


def invoke(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "CERNIQ_TARGET": "testbed",
        "CERNIQ_TESTBED_DIR": str(tmp_path / "tb"),
        "CERNIQ_STAGING_DB_PASSWORD": SECRET,
        "CERNIQ_PRODUCTION_DB_PASSWORD": SECRET,
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert SECRET not in result.stdout + result.stderr
    return result


def test_status_shows_applied_pending_and_drifted(envs: dict, tmp_path: Path) -> None:
    migs = tmp_path / "migs"
    shutil.copytree(REPO_MIGRATIONS, migs)
    dir_args = ("--migrations-dir", str(migs))
    assert invoke(tmp_path, "db.migrate", "--env", "staging", *dir_args).returncode == 0
    assert history(envs["staging"]) == [1, 300, 301, 302]

    baseline = migs / "0001_create_tenants_and_contacts.py"
    baseline.write_text(baseline.read_text() + "# edited after it was applied\n")
    created = invoke(tmp_path, "db.new", "add_negotiation_notes", *dir_args)
    assert created.stdout.strip() == f"created {migs / '0303_add_negotiation_notes.py'}"

    status = invoke(tmp_path, "db.status", "--env", "staging", *dir_args)
    assert status.returncode == 0, status.stderr
    states = {line.split()[0]: line.split()[2] for line in status.stdout.splitlines()[2:-1]}
    assert states == {"0001": "drifted", "0300": "applied", "0301": "applied", "0302": "applied",
                      "0303": "pending"}  # fmt: skip
    assert status.stdout.splitlines()[-1] == (
        "staging: 3 applied, 1 pending, 1 drifted, 0 missing-file"
    )

    verify = invoke(tmp_path, "db.verify", "--env", "staging", *dir_args)
    assert verify.returncode == 1
    assert "0001_create_tenants_and_contacts.py (applied" in verify.stdout
    assert verify.stderr.strip() == "error: verify: 1 problem(s) in staging"

    refused = invoke(tmp_path, "db.migrate", "--env", "staging", *dir_args)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: checksum drift: 1 applied migration file(s)")
    assert history(envs["staging"]) == [1, 300, 301, 302]


def test_production_goes_through_confirmation_staging_gate_and_backup(
    envs: dict, tmp_path: Path
) -> None:
    confirm = ("--confirm", "DEPLOY PRODUCTION")
    unconfirmed = invoke(tmp_path, "db.migrate", "--env", "production")
    assert unconfirmed.returncode == 2
    assert unconfirmed.stderr.strip() == (
        'error: changing the production database needs --confirm "DEPLOY PRODUCTION"'
    )
    no_reason = invoke(tmp_path, "db.migrate", "--env", "production", "--skip-staging-check")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr

    gated = invoke(tmp_path, "db.migrate", "--env", "production", *confirm)
    assert gated.returncode == 1
    assert gated.stderr.startswith("error: staging gate: not applied on staging: 0001")
    assert history(envs["production"]) == []

    assert invoke(tmp_path, "db.migrate", "--env", "staging").returncode == 0
    done = invoke(tmp_path, "db.migrate", "--env", "production", *confirm)
    assert done.returncode == 0, done.stderr
    assert "production: applied 4 migration(s), newest 0302 migrate_legacy_states" in done.stdout
    assert len(list((tmp_path / "backup").glob("backup_pre_migration_production_*.dump"))) == 1
    assert history(envs["production"]) == [1, 300, 301, 302]

    back = invoke(tmp_path, "db.rollback", "--env", "production", "--steps", "2", *confirm)
    assert back.returncode == 0, back.stderr
    assert history(envs["production"]) == [1, 300]


def test_lint_task_names_rule_file_and_line(tmp_path: Path) -> None:
    unsafe = tmp_path / "0400_drop_fax.py"
    unsafe.write_text('def up(db):\n    db.execute("SELECT 1")\n    db.execute(\n'
                      '        "ALTER TABLE contacts DROP COLUMN fax"\n    )\n')  # fmt: skip
    result = invoke(tmp_path, "db.lint", "--path", str(unsafe))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{unsafe}:4: [drop-column] DROP COLUMN breaks")
    assert result.stderr.strip() == f"error: lint: 1 unsafe statement(s), first {unsafe}:4"
    clean = invoke(tmp_path, "db.lint")
    assert (clean.returncode, clean.stdout.strip()) == (0, "lint: no findings")


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (("db.status", "--env", "prod"), {}, "error: unknown environment 'prod'"),
        (
            ("db.status", "--env", "staging"),
            {"CERNIQ_STAGING_DB_PASSWORD": ""},
            "error: missing secret: set the environment variable CERNIQ_STAGING_DB_PASSWORD",
        ),
        (("db.rollback", "--env", "staging", "--steps", "two"), {}, "error: --steps takes"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    envs: dict, tmp_path: Path, args: tuple, environ: dict, message: str
) -> None:
    result = invoke(tmp_path, *args, env=environ)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
