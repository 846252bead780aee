"""Real hosts, real users (issue 12): every procedure connects as `deploy`, never root; secrets
with URL characters survive end to end; host keys are checked strictly; doctor names a missing
sudo rule with the line that fixes it. Root is used here only to break a host on purpose."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from cerniq_ops import access, doctor, settings
from cerniq_ops.backup.commands import cluster_owner_programs
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")
URL_CHARACTERS = "@#/:"


def staging():
    return settings.load("staging")


def env_values(host, path: str) -> dict[str, str]:
    text = host.check_output(f"cat {path}")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def audit_lines(host) -> int:
    return int(host.check_output("wc -l < /opt/cerniq/audit.log"))


@pytest.fixture(scope="module")
def deployed(testbed):
    r = invoke("deploy", "--env", "staging", "--version", "v1.0.0", *SKIP_CI)
    assert r.returncode == 0, r.stdout + r.stderr
    return testbed


def test_a_deploy_as_deploy_works_end_to_end(deployed, testinfra_host):
    s = staging()
    assert s.ssh_user == "deploy" and all(h.data["ssh_user"] == "deploy" for h in s.hosts)
    app, db = testinfra_host("staging-app1"), testinfra_host("staging-db")
    assert app.check_output("id -un") == "deploy" and db.check_output("id -un") == "deploy"
    env_file = app.file("/opt/cerniq/.env")
    assert (env_file.user, env_file.mode) == ("deploy", 0o600)
    assert app.file("/opt/cerniq/current-version").content_string.strip() == "v1.0.0"
    running = app.check_output(
        "docker ps --filter label=com.docker.compose.project=cerniq --format '{{.Image}}' | sort"
    ).split()
    assert running == [s.image(svc, "v1.0.0") for svc in sorted(s.services)]
    dumps = db.check_output(f"ls {s.backup_dir}").split()
    assert any(d.endswith("-staging-pre-deploy.dump") for d in dumps), dumps  # taken as deploy
    newest = sorted(d for d in dumps if d.endswith(".dump"))[-1]
    dump = db.file(f"{s.backup_dir}/{newest}")
    assert (dump.user, dump.mode) == ("deploy", 0o600)
    r = invoke("backup.verify", "--env", "staging")
    assert r.returncode == 0, r.stdout + r.stderr
    r = invoke("verify", "--env", "staging")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line.split()[:3] for line in r.stdout.splitlines()]
    for host, check in (
        ("staging-app1", "deploy_user"),
        ("staging-db", "deploy_user"),
        ("staging-app1", "redis"),
        ("staging-app1", "containers"),
    ):
        assert ["PASS", host, check] in lines, r.stdout


def test_a_password_with_url_characters_works_end_to_end(deployed, testinfra_host):
    s = staging()
    password = os.environ[s.db_password_env]
    redis_password = os.environ[s.redis_password_env]
    assert all(c in password for c in URL_CHARACTERS)  # the testbed's passwords always are
    assert all(c in redis_password for c in URL_CHARACTERS)
    values = env_values(testinfra_host("staging-app1"), "/opt/cerniq/.env")
    url = urllib.parse.urlsplit(values["DATABASE_URL"])
    assert urllib.parse.unquote(url.password or "") == password
    assert (url.username, url.hostname, url.port, url.path) == (
        s.db_user,
        s.db_host.address,
        s.postgres_port,
        f"/{s.db_name}",
    )
    with psycopg.connect(values["DATABASE_URL"], connect_timeout=10) as conn:  # as the app would
        assert conn.execute("select current_user, current_database()").fetchone() == (
            s.db_user,
            s.db_name,
        )
    redis = urllib.parse.urlsplit(values["REDIS_URL"])
    assert urllib.parse.unquote(redis.password or "") == redis_password
    assert (redis.hostname, redis.port) == s.redis_address()
    with socket.create_connection((redis.hostname, redis.port), timeout=5) as conn:
        conn.sendall(doctor.redis_request(urllib.parse.unquote(redis.password or "")))
        replies = b""
        while replies.count(b"\r\n") < 2:
            chunk = conn.recv(1024)
            assert chunk, replies
            replies += chunk
    assert replies == b"+OK\r\n+PONG\r\n"


def test_a_changed_host_key_makes_deploy_refuse_with_one_line(deployed, testinfra_host):
    s = staging()
    app = testinfra_host("staging-app1")
    before = (audit_lines(app), app.check_output("cat /opt/cerniq/current-version"))
    known = Path(s.hosts_in("app_servers")[0].data["ssh_known_hosts_file"])
    original = known.read_text()
    lines = original.splitlines()
    other_key = next(line for line in lines if line.startswith("prod-db,")).split()[1:]
    changed = [
        " ".join([line.split()[0], *other_key]) if line.startswith("staging-app1,") else line
        for line in lines
    ]
    known.write_text("\n".join(changed) + "\n")
    try:
        r = invoke("deploy", "--env", "staging", "--version", "v1.0.0", *SKIP_CI)
        checked = invoke("doctor", "--env", "staging", "--trust")
        assert known.read_text() == "\n".join(changed) + "\n"  # --trust never replaces a key
    finally:
        known.write_text(original)
    assert r.returncode in (1, 2), r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith("error: host key of staging-app1 does not match "), errors
    assert "refusing to connect" in errors[0]
    assert "WARNING" not in r.stdout + r.stderr  # pyinfra's own warnings do not repeat it
    assert (audit_lines(app), app.check_output("cat /opt/cerniq/current-version")) == before
    assert not app.file("/opt/cerniq/deploy.lock").exists
    trust_row = next(
        line
        for line in checked.stdout.splitlines()
        if line.split()[:3] == ["trust", "staging-app1", "FAIL"]
    )
    assert "HOST KEY MISMATCH" in trust_row and "not replaced" in trust_row
    assert checked.returncode == 1


def test_doctor_trust_records_an_unknown_host_key_after_showing_it(deployed):
    s = staging()
    spec = s.db_host
    known = Path(spec.data["ssh_known_hosts_file"])
    original = known.read_text()
    entry = next(line for line in original.splitlines() if line.startswith("staging-db,"))
    known.write_text("".join(f"{ln}\n" for ln in original.splitlines() if ln != entry))
    try:
        r = invoke("doctor", "--env", "staging")
        assert r.returncode == 1
        assert any(
            line.split()[:3] == ["ssh", "staging-db", "FAIL"] and "unknown" in line
            for line in r.stdout.splitlines()
        ), r.stdout
        r = invoke("doctor", "--env", "staging", "--trust")
        assert r.returncode == 0, r.stdout + r.stderr
        row = next(
            line
            for line in r.stdout.splitlines()
            if line.split()[:3] == ["trust", "staging-db", "ok"]
        )
        assert f"recorded {spec.address} ssh-ed25519 SHA256:" in row
        added = known.read_text().splitlines()[-1]
        assert added == f"{spec.address} {' '.join(entry.split()[1:])}"
    finally:
        known.write_text(original)


def test_doctor_reports_a_missing_sudo_rule_with_the_fix(deployed, root_host):
    s = staging()
    rule = access.sudo_rule("deploy", "postgres", cluster_owner_programs(s))
    db_root = root_host("staging-db")
    assert db_root.check_output("id -un") == "root"
    saved = "/root/cerniq-deploy.sudoers"
    db_root.run_test(f"mv {access.SUDOERS_FILE} {saved}")
    try:
        r = invoke("doctor", "--env", "staging")
        backup = invoke("backup.create", "--env", "staging")
        audit = invoke("verify", "--env", "staging", "--host", "staging-db")
    finally:
        db_root.run_test(f"mv {saved} {access.SUDOERS_FILE}")
    assert r.returncode == 1
    row = next(
        line for line in r.stdout.splitlines() if line.split()[:3] == ["sudo", "staging-db", "FAIL"]
    )
    assert "deploy may not run pg_dump, pg_restore, psql as postgres without a password" in row
    assert (
        f"`invoke setup --env staging` writes `{rule}` to {access.SUDOERS_FILE} on staging-db"
        in row
    )
    # a procedure never prompts for a sudo password (pyinfra would): one line, exit 1
    assert backup.returncode == 1, backup.stdout + backup.stderr
    errors = backup.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), backup.stderr
    assert (
        "sudo on staging-db asks for a password: the deploy user's sudo rule is missing "
        "or incomplete; run `invoke doctor`"
    ) in errors[0]
    assert audit.returncode == 1 and f"`{rule}`" in audit.stdout
    again = invoke("doctor", "--env", "staging")
    assert again.returncode == 0, again.stdout


# -- migrations as deploy: the lock, the pre-migration backup (last: they add a migration) ----
MIGRATION_0410 = '''"""Add tenants.note (a migration released after the version staging runs)."""


def up(db):
    db.execute("ALTER TABLE tenants ADD COLUMN note text")


def down(db):
    db.execute("ALTER TABLE tenants DROP COLUMN note")
'''


@pytest.fixture(scope="module")
def one_more_migration(deployed, tmp_path_factory) -> Path:
    """The project's migrations and 0410 beside them, in a folder of their own."""
    folder = tmp_path_factory.mktemp("migrations")
    for path in sorted(settings.PROJECT_DIR.joinpath("migrations").glob("*.py")):
        shutil.copy(path, folder)
    (folder / "0410_add_tenants_note.py").write_text(MIGRATION_0410)
    return folder


def test_db_migrate_and_rollback_wait_for_the_deploy_lock_of_their_env(one_more_migration):
    """A deploy killed while holding the lock: db.migrate and db.rollback refuse (exit 3, the
    holder named) and change nothing; after `lock.release` they run, and release it."""
    from tests.support import interrupt

    killed = interrupt.kill_after(("deploy", "--env", "staging", "--version", "v1.0.0",
                                   *SKIP_CI), r"\] pre_deployment_checks")  # fmt: skip
    assert killed.seen and not killed.ended, killed.output
    folder = ("--migrations-dir", str(one_more_migration), "--lock-wait", "0")
    for task in ("db.migrate", "db.rollback"):
        r = invoke(task, "--env", "staging", *folder, *(("--steps", "1") * (task == "db.rollback")))
        assert r.returncode == 3, r.stdout + r.stderr
        assert "deploy lock on staging held by " in r.stderr, r.stderr
        assert "(v1.0.0: deploy), pid " in r.stderr and "(the run died)" in r.stderr, r.stderr
    status = invoke("db.status", "--env", "staging", "--migrations-dir", str(one_more_migration))
    assert re.search(r"^0410\s+add_tenants_note\s+pending$", status.stdout, re.M), status.stdout
    released = invoke("lock.release", "--env", "staging", "--confirm", "RELEASE staging")
    assert released.returncode == 0 and "released: " in released.stdout, released.stdout
    r = invoke("db.migrate", "--env", "staging", *folder)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "add_tenants_note" in r.stdout
    r = invoke("db.rollback", "--env", "staging", "--steps", "1", *folder)
    assert r.returncode == 0, r.stdout + r.stderr
    held = invoke("lock.status", "--env", "staging")
    assert held.returncode == 0 and "no deploy lock on staging" in held.stdout, held.stdout


def test_a_converged_deploy_with_a_pending_migration_takes_a_verified_backup_first(
    one_more_migration, testinfra_host
):
    """Staging already runs v1.0.0: the deploy has nothing to roll, yet 0410 is pending, so it
    takes the pre-migration backup, verifies it, then migrates; verify stays green."""
    s = staging()
    db = testinfra_host("staging-db")
    before = set(db.check_output(f"ls {s.backup_dir}").split())
    r = invoke("deploy", "--env", "staging", "--version", "v1.0.0", *SKIP_CI,
               env={"CERNIQ_OVERRIDE_MIGRATIONS_DIR": str(one_more_migration)})  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    backup = next(i for i, ln in enumerate(lines) if "] create_backup" in ln)
    migrate = next(i for i, ln in enumerate(lines) if "] run_migrations" in ln)
    assert backup < migrate
    taken = "\n".join(lines[backup:migrate])
    assert "-staging-pre-migration" in taken and "verified" in taken, taken
    assert "add_tenants_note" in "\n".join(lines[migrate:]), r.stdout
    new = set(db.check_output(f"ls {s.backup_dir}").split()) - before
    taken_id = next(n for n in new if n.endswith("-staging-pre-migration.manifest.json"))
    verification = db.file(f"{s.backup_dir}/{taken_id.removesuffix('.manifest.json')}.verify.json")
    assert json.loads(verification.content_string)["ok"] is True
    status = invoke("db.status", "--env", "staging", "--migrations-dir", str(one_more_migration))
    assert status.returncode == 0, status.stdout
    assert re.search(r"^0410\s+add_tenants_note\s+applied", status.stdout, re.M), status.stdout
    r = invoke("verify", "--env", "staging",
               env={"CERNIQ_OVERRIDE_MIGRATIONS_DIR": str(one_more_migration)})  # fmt: skip
    assert r.returncode == 0, r.stdout
