"""`invoke backup.*` on the testbed: real PostgreSQL 15 on the db hosts, real files in /backup."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading

import psycopg
import pytest

from cerniq_ops import backup, settings
from cerniq_ops.procedure import Context
from tests.support.cli import INVOKE, PROJECT, invoke

pytestmark = pytest.mark.integration


def connect(env: str) -> psycopg.Connection:
    s = settings.load(env)
    return psycopg.connect(**s.db_conninfo(s.require_secret("db_password_env")), autocommit=True)


def fingerprint(env: str, *tables: str) -> dict[str, str]:
    """Every row of TABLES, hashed in a stable order: equal means the same data."""
    with connect(env) as conn:
        return {
            t: conn.execute(
                f"SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x"
            ).fetchone()[0]
            for t in tables
        }


def run(*args: str) -> subprocess.CompletedProcess:
    result = invoke(*args, timeout=120)
    for env in settings.ENVIRONMENTS:
        secret = settings.load(env).secret("db_password_env")
        assert secret and secret not in result.stdout + result.stderr
    return result


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def make_backup(env: str, verify: bool = False) -> dict:
    """Set-up done in-process (the CLI is what the assertions drive): a backup's manifest."""
    report = backup.create(Context(settings.load(env), "backup.create", progress=lambda _: None))
    manifest = report.facts["backup"]
    if verify:
        options = {"id": manifest["id"]}
        ctx = Context(settings.load(env), "backup.verify", options=options, progress=lambda _: None)
        assert backup.verify(ctx).ok
    return manifest


def sql_on(host, dbname: str, statement: str) -> str:
    """STATEMENT run as the cluster owner on the db host (test set-up and inspection)."""
    return host.check_output(
        "sudo -n -u postgres -- /usr/lib/postgresql/15/bin/psql -X -At -h /run/postgresql -p 64032 "
        f"-d {shlex.quote(dbname)} -c {shlex.quote(statement)}"
    )


def databases(host) -> list[str]:
    return sql_on(host, "postgres", "SELECT datname FROM pg_database ORDER BY 1").split()


class connect_db:
    """The tables of database DBNAME (closed to connections: opened for the look, closed again)."""

    def __init__(self, env: str, dbname: str, host) -> None:
        self.dbname, self.host = dbname, host

    def __enter__(self) -> list[str]:
        sql_on(self.host, "postgres", f'ALTER DATABASE "{self.dbname}" ALLOW_CONNECTIONS true')
        return sql_on(
            self.host, self.dbname, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).split()

    def __exit__(self, *exc) -> None:
        sql_on(self.host, "postgres", f'ALTER DATABASE "{self.dbname}" ALLOW_CONNECTIONS false')


def test_create_verify_restore_round_trip_brings_back_the_data(testbed, testinfra_host):
    db = testinfra_host("staging-db")
    testinfra_host("staging-app1").run_test("echo v7.7.7 > /opt/cerniq/current-version")
    with connect("staging") as conn:
        conn.execute(
            "DROP SCHEMA IF EXISTS crm CASCADE; DROP TABLE IF EXISTS deals, events, later;"
            "CREATE SCHEMA crm; CREATE TABLE crm.contacts (id serial PRIMARY KEY, name text);"
            "CREATE TABLE deals (id int PRIMARY KEY, contact int, amount numeric, note text);"
            "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());"
            "INSERT INTO crm.contacts (name) SELECT 'contact ' || g FROM generate_series(1, 300) g;"
            "INSERT INTO deals SELECT g, g % 300 + 1, g * 1.25, repeat('n', g % 40) "
            "FROM generate_series(1, 2000) g"
        )
    before = fingerprint("staging", "crm.contacts", "deals")

    # a writer keeps inserting while the backup runs: counts and dump share one snapshot
    stop = threading.Event()

    def write() -> None:
        with connect("staging") as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO events DEFAULT VALUES")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        created = run_json("backup.create", "--env", "staging", "--label", "pre-deploy")
    finally:
        stop.set()
        writer.join()
    manifest = created["facts"]["backup"]
    backup_id = manifest["id"]
    assert backup_id.endswith("-staging-pre-deploy") and manifest["version"] == "v7.7.7"
    assert manifest["row_counts"]["crm.contacts"] == 300
    assert manifest["row_counts"]["public.deals"] == 2000
    dumped_events = manifest["row_counts"]["public.events"]
    assert manifest["pg_version"].startswith("15.") and manifest["label"] == "pre-deploy"
    dump = db.file(manifest["file"])  # the login user's file: nothing needs root or chown
    assert (dump.mode, dump.user, dump.size) == (0o600, "deploy", manifest["size"])
    assert db.file(f"/backup/{backup_id}.manifest.json").mode == 0o600
    assert db.check_output(f"sha256sum {manifest['file']}").split()[0] == manifest["sha256"]

    verified = run_json("backup.verify", "--env", "staging", "--id", backup_id)
    steps = {s["name"]: s for s in verified["steps"]}
    assert "3 tables" in steps["test_restore"]["detail"] and verified["ok"]
    assert not [d for d in databases(db) if d.startswith("cerniq_scratch_")]

    with connect("staging") as conn:
        conn.execute("DELETE FROM deals WHERE id > 100; UPDATE crm.contacts SET name = 'x'")
        conn.execute("CREATE TABLE later (id int)")
    assert fingerprint("staging", "crm.contacts", "deals") != before

    testinfra_host("staging-app1").run_test("rm -f /opt/cerniq/current-version")  # no app here
    refused = run("backup.restore", backup_id, "--env", "staging")
    assert refused.returncode == 2
    assert "pass --confirm 'RESTORE staging'" in refused.stderr
    restored = run_json(
        "backup.restore", backup_id, "--env", "staging", "--confirm", "RESTORE staging"
    )
    assert fingerprint("staging", "crm.contacts", "deals") == before
    with connect("staging") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == dumped_events
        assert conn.execute("SELECT to_regclass('later')").fetchone()[0] is None
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                            "WHERE datname = 'cerniq'").fetchone()[0] == "c3rn1q"  # fmt: skip
    previous = restored["facts"]["previous_kept"]
    assert previous.startswith("cerniq_previous_")
    assert [d for d in databases(db) if d.startswith("cerniq")] == ["cerniq", previous]
    with connect_db("staging", previous, db) as old:  # the data it replaced, kept whole
        assert "later" in old

    pre_restore = restored["facts"]["pre_restore_backup"]
    listed = run_json("backup.list", "--env", "staging")
    states = {b["id"]: b["state"] for b in listed["backups"]}
    assert states[backup_id] == "verified" and states[pre_restore] == "not verified"
    assert listed["verified"]["newest_verified"] == backup_id and listed["verified"]["fresh"]
    audit = db.check_output("cat /opt/cerniq/audit.log").splitlines()
    swap = [json.loads(a) for a in audit if '"swap_databases"' in a][-1]
    assert (swap["procedure"], swap["result"], swap["env"]) == ("backup.restore", "ok", "staging")

    dropped = run("backup.drop-previous", "--env", "staging", "--confirm", "DROP PREVIOUS staging")
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.strip().splitlines()[-1] == f"dropped database {previous}"
    assert [d for d in databases(db) if d.startswith("cerniq")] == ["cerniq"]


def test_a_corrupted_backup_fails_verify_with_a_clear_message(testbed, testinfra_host):
    db = testinfra_host("staging-db")
    manifest = make_backup("staging")
    size = manifest["size"]
    db.run_test(f"printf 'CORRUPT' | dd of={manifest['file']} bs=1 seek={size // 2} conv=notrunc")

    result = run("backup.verify", "--env", "staging", "--id", manifest["id"])
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"error: backup.verify to staging failed at step 'check_checksum': "
        f"backup {manifest['id']} is corrupt: {manifest['file']} has sha256 "
    )
    assert result.stderr.strip().endswith("do not restore it")
    record = json.loads(db.file(f"/backup/{manifest['id']}.verify.json").content_string)
    assert record["ok"] is False and "is corrupt" in record["error"]
    listed = run_json("backup.list", "--env", "staging")
    assert {b["id"]: b["state"] for b in listed["backups"]}[manifest["id"]] == "verify failed"

    missing = run("backup.verify", "--env", "staging", "--id", "20200101T000000Z-staging-manual")
    assert missing.returncode == 2 and "no backup '20200101T000000Z-staging-manual'" in (
        missing.stderr
    )


def test_retention_keeps_the_newest_and_the_newest_verified(testbed, testinfra_host):
    db = testinfra_host("prod-db")
    oldest = make_backup("production", verify=True)["id"]
    middle = make_backup("production")["id"]
    newest = make_backup("production")["id"]

    # other tests (e2e deploys) may have left production backups too: all older, unverified
    listed = run_json("backup.list", "--env", "production")["backups"]
    mine = [b["id"] for b in reversed(listed) if b["env"] == "production"]
    expected = [i for i in mine if i not in (oldest, newest)]
    assert middle in expected

    planned = run_json("backup.prune", "--env", "production", "--keep-last", "1",
                       "--keep-days", "0", "--dry-run")  # fmt: skip
    assert planned["facts"]["deleted"] == expected
    assert db.file(f"/backup/{middle}.dump").exists

    pruned = run_json("backup.prune", "--env", "production", "--keep-last", "1", "--keep-days", "0")
    assert pruned["facts"]["deleted"] == expected
    assert sorted(pruned["facts"]["kept"]) == sorted([oldest, newest])
    assert not db.file(f"/backup/{middle}.dump").exists
    assert not db.file(f"/backup/{middle}.manifest.json").exists
    assert db.file(f"/backup/{oldest}.dump").exists and db.file(f"/backup/{newest}.dump").exists

    bad = run("backup.prune", "--env", "production", "--keep-last", "0")
    assert bad.returncode == 2 and "retention must keep at least the newest backup" in bad.stderr


def test_restore_of_a_backup_of_another_environment_is_refused(testbed, testinfra_host):
    manifest = make_backup("staging")
    prod_db = testinfra_host("prod-db")
    ssh = ["ssh", "-F", str(testbed.tb.ssh_config)]
    for suffix in (".dump", ".manifest.json"):  # an operator copied a staging backup over
        path = f"/backup/{manifest['id']}{suffix}"
        data = subprocess.run([*ssh, "staging-db", "cat", path], capture_output=True, check=True)
        subprocess.run([*ssh, "prod-db", f"cat > {path}"], input=data.stdout, check=True)
    before = prod_db.check_output("ls /backup")
    with connect("production") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS live_marker (id int)")

    result = run("backup.restore", manifest["id"], "--env", "production",
                 "--confirm", "RESTORE production")  # fmt: skip
    assert result.returncode == 2
    assert (
        f"backup {manifest['id']} is of staging, not production; restoring it over production "
        "needs --allow-other-env"
    ) in result.stderr
    assert prod_db.check_output("ls /backup") == before  # no pre-restore backup either
    with connect("production") as conn:
        assert conn.execute("SELECT to_regclass('live_marker')").fetchone()[0] == "live_marker"

    wrong = run("backup.restore", manifest["id"], "--env", "production", "--confirm", "yes")
    assert wrong.returncode == 2 and "needs --confirm 'RESTORE production'" in wrong.stderr


def restore_until(env: str, backup_id: str, line: str) -> list[str]:
    """Run the restore and SIGKILL its process group once it prints LINE (a dropped CI
    runner); the lines it printed."""
    proc = subprocess.Popen(
        [INVOKE, "backup.restore", backup_id, "--env", env, "--confirm", f"RESTORE {env}"],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    seen = []
    assert proc.stdout is not None
    for printed in proc.stdout:
        seen.append(printed.rstrip("\n"))
        if line in printed:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen
    return seen


def test_a_restore_killed_after_the_swap_leaves_complete_data_and_the_rerun_converges(
    testbed, testinfra_host
):
    db = testinfra_host("staging-db")
    with connect("staging") as conn:
        conn.execute(
            "DROP TABLE IF EXISTS kept; CREATE TABLE kept (id int PRIMARY KEY);"
            "INSERT INTO kept SELECT generate_series(1, 500)"
        )
    manifest = make_backup("staging")
    before = fingerprint("staging", "kept")
    with connect("staging") as conn:
        conn.execute("DELETE FROM kept WHERE id > 10")

    seen = restore_until("staging", manifest["id"], "check_app_on_restored")
    assert any("swap_databases" in s for s in seen)
    # killed between the swap and its confirmation: one complete database, open to the app
    assert fingerprint("staging", "kept") == before
    previous = [d for d in databases(db) if d.startswith("cerniq_previous_")]
    assert len(previous) == 1
    record = json.loads(sql_on(db, "postgres", "SELECT shobj_description(oid, 'pg_database') "
                               f"FROM pg_database WHERE datname = '{previous[0]}'"))  # fmt: skip
    assert (record["state"], record["backup"]) == ("swapped", manifest["id"])

    again = run("backup.restore", manifest["id"], "--env", "staging",
                "--confirm", "RESTORE staging")  # fmt: skip
    if again.returncode == 3:  # the dead run's lock: released where the tool says to
        released = run("lock.release", "--env", "staging", "--confirm", "RELEASE staging")
        assert released.returncode == 0, released.stderr
        again = run("backup.restore", manifest["id"], "--env", "staging",
                    "--confirm", "RESTORE staging")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (
        f"repaired: cerniq was already swapped to {manifest['id']} by a run that died before "
        f"confirming it (old data in {previous[0]}): confirming it now"
    ) in again.stdout
    assert "skipped: already swapped in" in again.stdout  # no second restore, no data churn
    assert fingerprint("staging", "kept") == before
    assert [d for d in databases(db) if d.startswith("cerniq_")] == previous
    record = json.loads(sql_on(db, "postgres", "SELECT shobj_description(oid, 'pg_database') "
                               f"FROM pg_database WHERE datname = '{previous[0]}'"))  # fmt: skip
    assert record["state"] == "kept" and record["drop_after"]
    run("backup.drop-previous", "--env", "staging", "--confirm", "DROP PREVIOUS staging")


def test_leftovers_of_a_killed_restore_are_repaired_by_the_next_one(testbed, testinfra_host):
    db = testinfra_host("staging-db")
    manifest = make_backup("staging")
    # what a restore killed while closing the live database leaves: a half-restored database
    # and the live one refusing connections
    sql_on(db, "postgres", 'CREATE DATABASE "cerniq_scratch_restore_dead"')
    sql_on(db, "postgres", 'ALTER DATABASE "cerniq" ALLOW_CONNECTIONS false')

    again = run("backup.restore", manifest["id"], "--env", "staging",
                "--confirm", "RESTORE staging")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (
        "repaired: dropped cerniq_scratch_restore_dead, left by a restore that died before "
        "its swap" in again.stdout
    )
    assert (
        "repaired: cerniq accepts connections again (a restore died while closing it)"
        in again.stdout
    )
    assert "cerniq_scratch_restore_dead" not in databases(db)
    with connect("staging") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    run("backup.drop-previous", "--env", "staging", "--confirm", "DROP PREVIOUS staging")


def test_an_app_unhealthy_after_the_swap_gets_its_data_back(testbed, testinfra_host):
    db = testinfra_host("staging-db")
    with connect("staging") as conn:
        conn.execute("DROP TABLE IF EXISTS kept; CREATE TABLE kept (id int);"
                     "INSERT INTO kept SELECT generate_series(1, 50)")  # fmt: skip
    manifest = make_backup("staging")
    with connect("staging") as conn:
        conn.execute("INSERT INTO kept SELECT generate_series(51, 60)")
    live = fingerprint("staging", "kept")
    # current-version says an app is deployed, but nothing serves it: it is never healthy
    testinfra_host("staging-app1").run_test("echo v9.9.9 > /opt/cerniq/current-version")
    try:
        failed = run("backup.restore", manifest["id"], "--env", "staging",
                     "--confirm", "RESTORE staging")  # fmt: skip
    finally:
        testinfra_host("staging-app1").run_test("rm -f /opt/cerniq/current-version")
    assert failed.returncode == 1
    line = failed.stderr.strip()
    assert line.startswith(
        "error: backup.restore to staging failed at step 'check_app_on_restored': "
        "the app is not healthy on the restored cerniq"
    )
    assert "swapped back: cerniq has its data from before the restore again" in line
    assert fingerprint("staging", "kept") == live  # the live data, open to connections
    rejected = [d for d in databases(db) if d.startswith("cerniq_rejected_")]
    assert len(rejected) == 1 and f"the restored one kept as {rejected[0]}" in line
    run("backup.drop-previous", "--env", "staging", "--confirm", "DROP PREVIOUS staging")
    assert not [d for d in databases(db) if d.startswith(("cerniq_rejected_", "cerniq_prev"))]


def test_prune_removes_an_orphan_dump_and_a_verified_backup_whose_dump_was_deleted(
    testbed, testinfra_host
):
    db = testinfra_host("staging-db")
    good = make_backup("staging", verify=True)
    lost = make_backup("staging", verify=True)  # the newest verified one, until its dump goes
    db.run_test(f"rm {lost['file']}")
    orphan = "/backup/20200101T000000Z-staging-pre-deploy.dump"  # dump done, manifest never
    db.run_test(f"cp {good['file']} {orphan}")

    listed = run_json("backup.list", "--env", "staging")
    assert listed["verified"]["newest_verified"] == good["id"]  # not the one without a dump
    assert listed["leftovers"] == ["20200101T000000Z-staging-pre-deploy.dump"]
    assert {b["id"]: b["state"] for b in listed["backups"]}[lost["id"]] == "dump missing"
    audit = run("verify", "--env", "staging", "--host", "staging-db")
    assert audit.returncode == 1
    assert "leftover 20200101T000000Z-staging-pre-deploy.dump in /backup on staging-db" in (
        audit.stdout + audit.stderr
    )

    pruned = run_json("backup.prune", "--env", "staging")
    assert pruned["facts"]["broken"] == [lost["id"]]
    assert pruned["facts"]["leftovers"] == ["20200101T000000Z-staging-pre-deploy.dump"]
    assert good["id"] in pruned["facts"]["kept"]
    assert not db.file(orphan).exists and not db.file(f"/backup/{lost['id']}.manifest.json").exists
    assert db.file(good["file"]).exists
    listed = run_json("backup.list", "--env", "staging", "--check")
    assert listed["leftovers"] == [] and listed["verified"]["newest_verified"] == good["id"]


def test_an_id_is_reserved_exclusively_on_the_host(testbed, testinfra_host):
    db = testinfra_host("staging-db")
    p = backup.paths("/backup", "20200202T000000Z-staging-manual")
    reserve = shlex.join(backup.reserve_argv(p))
    assert db.run(reserve).rc == 0 and db.file(p["partial"]).mode == 0o600
    assert db.run(reserve).rc == backup.RESERVED_EXIT  # the same second, another run: refused
    db.run_test(f"rm {p['partial']} && touch {p['dump']}")
    assert db.run(reserve).rc == backup.RESERVED_EXIT and not db.file(p["partial"]).exists
    db.run_test(f"rm -f {p['dump']}")


def test_a_short_idle_in_transaction_timeout_does_not_break_the_dump(testbed, testinfra_host):
    db = testinfra_host("staging-db")
    sql_on(db, "postgres", "ALTER ROLE c3rn1q SET idle_in_transaction_session_timeout = '1ms'")
    try:
        manifest = make_backup("staging", verify=True)
    finally:
        sql_on(db, "postgres", "ALTER ROLE c3rn1q RESET idle_in_transaction_session_timeout")
    assert manifest["row_counts"]
