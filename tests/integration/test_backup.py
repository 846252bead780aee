"""`invoke backup.*` on the testbed: real PostgreSQL 15 on the db hosts, real files in /backup."""

from __future__ import annotations

import json
import subprocess
import threading

import psycopg
import pytest

from cerniq_ops import backup, settings
from cerniq_ops.procedure import Context
from tests.support.cli import invoke

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


def databases(host) -> list[str]:
    out = host.check_output(
        "sudo -n -u postgres -- /usr/lib/postgresql/15/bin/psql -X -At -h /run/postgresql"
        " -p 64032 -d postgres "
        "-c 'SELECT datname FROM pg_database ORDER BY 1'"
    )
    return out.split()


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
    dump = db.file(manifest["file"])
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
    assert [d for d in databases(db) if d.startswith("cerniq")] == ["cerniq"]

    pre_restore = restored["facts"]["pre_restore_backup"]
    listed = run_json("backup.list", "--env", "staging")
    states = {b["id"]: b["state"] for b in listed["backups"]}
    assert states[backup_id] == "verified" and states[pre_restore] == "not verified"
    assert listed["verified"]["newest_verified"] == backup_id and listed["verified"]["fresh"]
    audit = db.check_output("cat /opt/cerniq/audit.log").splitlines()
    swap = [json.loads(a) for a in audit if '"swap_databases"' in a][-1]
    assert (swap["procedure"], swap["result"], swap["env"]) == ("backup.restore", "ok", "staging")


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
