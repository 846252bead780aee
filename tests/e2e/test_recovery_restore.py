"""Fault injection on the testbed: `invoke backup.restore` on production, with the app deployed
and healthy, SIGKILLed (its whole process group, as a dropped CI runner) in each of its
phases and at a random moment (the seed printed); then the lock released as the tool says and
the same restore run again (issues 11 and 12).

Each case writes a row after the backup it restores, so "restored" and "the data before" are
told apart: after the re-run the live database holds exactly the backup's rows, the data from
before is kept (the row written after the backup is in it), `invoke verify` passes, and a
keep-alive load through both hosts' Traefik sees 0 failed requests. A last case makes the app
unhealthy while the restore checks it: the restore swaps the data back, and says so.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex

import pytest

from cerniq_ops import backup
from cerniq_ops.clients.http import wait_healthy
from cerniq_ops.procedure import Context
from cerniq_ops.verification import assert_verified
from tests.support.cli import invoke
from tests.support.recovery import APP_HOSTS, deployed_production, prod, run_killed_then_rerun

pytestmark = pytest.mark.e2e
QUIET = lambda _line: None  # noqa: E731
FAILED_RESTORE = ["FAIL", "prod-db", "restore_state"]

# (what, the progress line after which the restore is killed, seconds after that line)
RESTORE_KILLS = [
    ("during the pre-restore backup", r"\] backup_current_database", 0.4),
    ("during pg_restore into the new database", r"\] restore_into_new_database", 0.6),
    ("between the row compare and the swap", r"\] swap_databases", 0.0),
    ("after the swap, while the app is checked", r"\] check_app_on_restored", 0.0),
    ("while the data before is put under retention", r"\] keep_previous_database", 0.0),
]


def restore_args(backup_id: str) -> tuple[str, ...]:
    return ("backup.restore", backup_id, "--env", "production", "--confirm", "RESTORE production")


@pytest.fixture(scope="module")
def deployed(testbed):
    """Staging (production's migration gate) then production on v1.0.0."""
    return deployed_production(testbed, ["v1.0.0"])


def sql(testinfra_host, dbname: str, statement: str) -> str:
    """STATEMENT in DBNAME on prod-db as the cluster owner (the deploy user's sudo rule)."""
    argv = backup.psql_argv(prod(), dbname, statement)
    out = testinfra_host("prod-db").run(shlex.join(argv))
    assert out.rc == 0, f"{statement}: {out.stderr}"
    return out.stdout.strip()


def sql_in_kept(testinfra_host, dbname: str, statement: str) -> str:
    """STATEMENT in a database a restore kept (closed to connections: opened for the read)."""
    sql(testinfra_host, "postgres", f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    try:
        return sql(testinfra_host, dbname, statement)
    finally:
        sql(testinfra_host, "postgres", f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')


def row_counts(testinfra_host, dbname: str) -> dict[str, int]:
    return json.loads(sql(testinfra_host, dbname, backup.ROW_COUNTS_SQL).splitlines()[-1])


def records(testinfra_host) -> dict[str, dict]:
    """The databases that carry a restore's record (their comment), by name."""
    found = backup.parse_databases(sql(testinfra_host, "postgres", backup.DATABASES_SQL))
    return {d.name: d.record for d in found if d.record}


def backup_then_write(testinfra_host, tag: str) -> tuple[str, dict[str, int]]:
    """A new production backup (its id and row counts), then a row it does not have."""
    made = backup.create(Context(prod(), "backup.create", progress=QUIET))
    manifest = made.facts["backup"]
    sql(testinfra_host, prod().db_name, f"INSERT INTO tenants (name) VALUES ('after {tag}')")
    return manifest["id"], manifest["row_counts"]


def assert_restored(testinfra_host, backup_id: str, rows: dict[str, int], tag: str) -> None:
    """The live database has exactly the backup's rows; the data from before the restore is
    kept (a run killed after it finished keeps it twice: the re-run restores again)."""
    assert row_counts(testinfra_host, prod().db_name) == rows
    kept = {
        name: r
        for name, r in records(testinfra_host).items()
        if r.get("backup") == backup_id and r.get("cerniq") == "previous"
    }
    assert kept and all(r["state"] == "kept" for r in kept.values()), kept
    written = f"SELECT count(*) FROM tenants WHERE name = 'after {tag}'"
    holding = [name for name in kept if sql_in_kept(testinfra_host, name, written) == "1"]
    assert len(holding) == 1, f"the row written after {backup_id} is not kept: {kept}"


@pytest.mark.parametrize(
    ("where", "pattern", "delay"), RESTORE_KILLS, ids=[k[0] for k in RESTORE_KILLS]
)
def test_a_restore_killed_on_the_way_is_finished_by_its_rerun(
    deployed, testinfra_host, where, pattern, delay
):
    tag = where.split(",")[0]
    backup_id, rows = backup_then_write(testinfra_host, tag)

    def caught_by_verify(_killed: str):  # before the re-run: verify names the wrong and its fix
        r = invoke("verify", "--env", "production", "--host", "prod-db")
        assert r.returncode == 1, r.stdout
        line = next(ln for ln in r.stdout.splitlines() if ln.split()[:3] == FAILED_RESTORE)
        assert f"on prod-db was swapped to backup {backup_id} by a restore that died" in line

    between = caught_by_verify if "after the swap" in where else None
    killed, rerun, _ = run_killed_then_rerun(restore_args(backup_id), pattern, delay, between)
    assert f"production restored from {backup_id}; the data before it: backup " in rerun
    if "after the swap" in where:
        assert "by a run that died before confirming it" in rerun, rerun
    died = re.findall(r"\[\d+/\d+\] (\w+)", killed)
    if died and died[-1] in ("restore_into_new_database", "compare_row_counts"):  # not later
        assert re.search(r"repaired: dropped \S+, left by a restore that died before", rerun)
    assert_restored(testinfra_host, backup_id, rows, tag)


def test_a_restore_killed_at_a_random_moment_is_finished_by_its_rerun(deployed, testinfra_host):
    seed = int(os.environ.get("CERNIQ_TEST_KILL_SEED") or random.randrange(1_000_000))
    delay = round(random.Random(seed).uniform(0.0, 8.0), 2)
    print(f"random kill: seed {seed} (CERNIQ_TEST_KILL_SEED={seed}): {delay}s after the start")
    backup_id, rows = backup_then_write(testinfra_host, f"random {seed}")
    run_killed_then_rerun(restore_args(backup_id), r"\] find_backup", delay, may_end=True)
    assert_restored(testinfra_host, backup_id, rows, f"random {seed}")


def test_an_app_unhealthy_on_the_restored_data_gets_the_data_before_back(
    deployed, testinfra_host, root_host
):
    """The api replicas stop answering /health once the swap is made (their health file
    removed, as a replica that cannot use the restored data would): the restore fails its
    app check, swaps the data from before back in, keeps the restored one as rejected, and
    the live database accepts connections; once the app is healthy again verify passes."""
    s = prod()
    backup_id, _ = backup_then_write(testinfra_host, "unhealthy")
    before = row_counts(testinfra_host, s.db_name)
    api = "label=com.docker.compose.service=api"
    sick = f"for c in $(docker ps -q --filter {api}); do docker exec $c rm -f /tmp/www/health; done"
    env = {"CERNIQ_OVERRIDE_HEALTH_RETRIES": "3", "CERNIQ_OVERRIDE_HEALTH_INTERVAL": "1"}
    try:
        for name in APP_HOSTS:
            assert root_host(name).run(sick).rc == 0
        r = invoke(*restore_args(backup_id), env=env)
    finally:
        for name in APP_HOSTS:  # healthy again: the replicas restarted
            out = root_host(name).run(f"docker restart $(docker ps -q --filter {api})")
            assert out.rc == 0, out.stderr
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the app is not healthy on the restored" in r.stdout + r.stderr
    assert "swapped back: " in r.stdout + r.stderr
    assert row_counts(testinfra_host, s.db_name) == before  # the data from before, all of it
    rejected = [n for n, rec in records(testinfra_host).items() if rec.get("cerniq") == "rejected"]
    assert rejected, records(testinfra_host)
    ok, last, _ = wait_healthy(s.public_url, 30, 1.0, "v1.0.0")
    assert ok, last.detail
    assert_verified("production")  # the rejected data is kept under the retention delay
