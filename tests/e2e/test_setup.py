"""`invoke setup` on bare hosts (issue 13): staging's app and db hosts boot as full machines
(debootstrapped Debian 12 with systemd; testbed/machines.py) where only root logs in and
nothing of ours is installed. A dry run lists each host's planned changes and changes nothing;
a setup killed while it installs is finished by the next run; a second run changes nothing and
a drifted file is put back; then a deploy works as the deploy user and `invoke verify` is
green."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from tests.support.cli import INVOKE, PROJECT, invoke

pytestmark = pytest.mark.e2e
TESTBED_BARE_ENV = "staging"
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")


def root(testinfra_host, name: str):
    return testinfra_host(f"{name}-root")


def test_a_dry_run_on_bare_hosts_lists_each_hosts_changes_and_changes_nothing(
    testbed, testinfra_host
):
    r = invoke("setup", "--env", "staging", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    planned = re.findall(r"would change (\S+): (.+)", r.stdout)
    by_host = {name for name, _ in planned}
    assert by_host == {"staging-app1", "staging-db"}, r.stdout
    assert ("staging-app1", "docker host | packages docker.io docker-compose curl") in planned
    assert ("staging-db", "redis | /etc/redis/redis.conf") in planned, r.stdout
    # conditions hold in plans: restarts that a first run makes, not those it does not need
    assert ("staging-db", "redis | redis-server restarted (redis.conf changed)") in planned
    assert not [op for _, op in planned if "docker restarted" in op], r.stdout
    assert "dry run complete" in r.stdout and "nothing changed" in r.stdout
    for name in ("staging-app1", "staging-db"):
        host = root(testinfra_host, name)
        assert not host.user("deploy").exists
        assert not host.exists("docker") and not host.exists("psql")


def test_a_setup_killed_while_it_installs_is_finished_by_the_next_run(testbed, testinfra_host):
    """SIGTERM while dpkg works on the db host (the first provisioning): the run fails in one
    line; the next run finishes what it left (dpkg included) and doctor is green as deploy."""
    db = root(testinfra_host, "staging-db")
    proc = subprocess.Popen(
        [INVOKE, "setup", "--env", "staging"],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while db.run("pgrep -x dpkg").rc != 0:
        assert proc.poll() is None and time.monotonic() < deadline, "dpkg never ran"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 1, out
    assert "failed at step 'provision': stopped by SIGTERM" in out, out
    r = invoke("setup", "--env", "staging", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "doctor: ok" in r.stdout, r.stdout
    app = root(testinfra_host, "staging-app1")
    assert "docker" in app.user("deploy").groups
    assert app.service("docker").is_running and app.service("docker").is_enabled
    assert app.file("/opt/cerniq").user == "deploy"
    assert db.service("postgresql@15-main").is_running
    assert db.service("redis-server").is_running
    assert db.file("/etc/sudoers.d/cerniq-deploy").mode == 0o440
    assert db.file("/backup").user == "deploy" and db.file("/backup").mode == 0o700
    assert db.run("dpkg --audit").stdout.strip() == ""  # nothing left half installed


def test_a_second_run_changes_nothing_and_a_drifted_file_is_put_back(testbed, testinfra_host):
    again = invoke("setup", "--env", "staging", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout, again.stdout
    assert "setup complete: staging, 0 change(s)" in again.stdout, again.stdout
    db = root(testinfra_host, "staging-db")
    db.check_output("sed -i 's/^port .*/port 6390/' /etc/redis/redis.conf")
    r = invoke("setup", "--env", "staging", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.findall(r"changed (staging-\S+): (.+)", r.stdout) == [
        ("staging-db", "redis | /etc/redis/redis.conf"),
        ("staging-db", "redis | redis-server restarted (redis.conf changed)"),
    ], r.stdout
    assert db.check_output("grep ^port /etc/redis/redis.conf") == "port 64039"


def test_a_deploy_on_the_set_up_hosts_works_and_verify_is_green(testbed, testinfra_host):
    r = invoke("deploy", "--env", "staging", "--version", "v1.0.0", *SKIP_CI)
    assert r.returncode == 0, r.stdout + r.stderr
    app = testinfra_host("staging-app1")
    assert app.check_output("id -un") == "deploy"
    assert app.file("/opt/cerniq/current-version").content_string.strip() == "v1.0.0"
    v = invoke("verify", "--env", "staging")
    assert v.returncode == 0, v.stdout + v.stderr
