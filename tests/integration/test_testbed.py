"""The testbed is real: SSH hosts with their own dockerd, registry, PostgreSQL and /opt/cerniq."""

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from cerniq_ops import settings, survey
from testbed import app_ci, images
from testbed.sample_app import git
from tests.support.github_prs import GitHubPulls

pytestmark = pytest.mark.integration


def test_pyinfra_reaches_every_host_and_sees_its_daemons(testbed):
    for env in settings.ENVIRONMENTS:
        reports = {r.name: r for r in survey.survey(settings.load(env))}
        s = settings.load(env)
        assert set(reports) == {h.name for h in s.hosts}
        for host in s.app_hosts:
            assert reports[host.name].hostname == host.name
            assert {"sshd", "dockerd"} <= set(reports[host.name].daemons)
        assert {"sshd", "postgres"} <= set(reports[s.db_host.name].daemons)


def test_sshd_and_dockerd_run_on_each_app_host(testbed, testinfra_host):
    for name in ("staging-app1", "prod-app1", "prod-app2"):
        host = testinfra_host(name)
        assert host.check_output("hostname") == name
        assert host.socket(f"tcp://{testbed.tb.host(name).ip}:22").is_listening
        assert host.process.filter(comm="dockerd")
        assert host.run("docker info --format '{{.Driver}}'").stdout.strip() == "overlay2"
        assert "docker-compose version 1.29" in host.check_output("docker compose version")


def test_registry_serves_published_images_to_app_hosts(testbed, testinfra_host):
    tags = testbed.registry().tags("cerniq/api")
    assert "v1.0.0" in tags
    host = testinfra_host("prod-app2")
    image = f"{testbed.tb.registry_address}/cerniq/api:v1.0.0"
    assert host.run(f"docker pull -q {image}").rc == 0
    out = host.check_output(f"docker run --rm --entrypoint /bin/cat {image} /app/www/health")
    assert '"version": "v1.0.0"' in out


def test_postgresql_per_environment_accepts_the_app_user(testbed):
    for env in settings.ENVIRONMENTS:
        s = settings.load(env)
        with psycopg.connect(**s.db_conninfo(s.require_secret("db_password_env"))) as conn:
            assert conn.execute("select current_user, current_database()").fetchone() == (
                "c3rn1q",
                "cerniq",
            )
            assert conn.info.port == 64032


def test_each_host_has_its_own_opt_cerniq_and_docker(testbed, testinfra_host):
    one, two = testinfra_host("prod-app1"), testinfra_host("prod-app2")
    one.run_test("echo app1 > /opt/cerniq/isolation-marker")
    assert one.file("/opt/cerniq/isolation-marker").content_string.strip() == "app1"
    assert not two.file("/opt/cerniq/isolation-marker").exists
    assert not os.path.exists("/opt/cerniq/isolation-marker")  # nor on the machine itself
    one.run_test("docker create --name iso-probe %s/cerniq/api:v1.0.0", testbed.tb.registry_address)
    assert two.run("docker inspect iso-probe").rc != 0
    one.run_test("docker rm iso-probe && rm /opt/cerniq/isolation-marker")
    assert one.file("/backup").is_directory and one.file("/run/docker.sock").exists


def test_hosts_log_in_as_deploy_with_their_own_accounts_and_root_only_by_alias(
    testbed, testinfra_host, root_host
):
    machine_passwd = Path("/etc/passwd").read_text()
    assert "\ndeploy:" not in "\n" + machine_passwd  # no user on the machine itself
    for name in ("staging-app1", "prod-app2", "prod-db", "registry"):
        host = testinfra_host(name)
        assert host.check_output("id -un") == "deploy"
        assert host.file("/opt/cerniq").user == "deploy"
        assert root_host(name).check_output("id -un") == "root"
    app, db = testinfra_host("prod-app1"), testinfra_host("prod-db")
    assert "docker" in app.check_output("id -Gn").split()
    assert app.run("docker ps").rc == 0
    assert "docker" not in db.check_output("id -Gn").split()
    assert db.file("/backup").user == "deploy" and db.file("/backup").mode == 0o700
    assert db.run("sudo -n -u postgres -- /usr/lib/postgresql/15/bin/psql -V").rc == 0
    denied = db.run("sudo -n -u postgres -- /bin/sh -c id")
    assert denied.rc != 0 and "password is required" in denied.stderr
    assert app.run("sudo -n -l").rc != 0  # no rule at all on app hosts
    assert db.process.filter(user="redis", comm="redis-server")


def test_a_release_tag_pushed_to_the_app_origin_is_built_by_its_ci(testbed, tmp_path):
    """The app's repository is part of the testbed: CERNIQ_APP_REPO is a checkout of a bare
    origin whose post-receive hook plays the app's CI (testbed/app_ci.py): the push returns,
    then a green check run reaches GitHub (the stand-in) and the tag's images the registry."""
    checkout = Path(os.environ["CERNIQ_APP_REPO"])
    origin = testbed.tb.app_repo_dir / "origin.git"
    assert git(checkout, "remote", "get-url", "origin").strip() == str(origin)
    assert git(origin, "tag", "--list").split() == ["v1.0.0"]
    with GitHubPulls(origin=origin) as gh:
        app_ci.configure_github(origin, gh.url, gh.repo, gh.token)
        assert oct((origin / app_ci.CONFIG).stat().st_mode & 0o777) == "0o600"
        git(checkout, "tag", "-a", "v1.0.1", "-m", "Release v1.0.1", "origin/main")
        pushed = subprocess.run(
            ["git", "-C", str(checkout), "push", "origin", "refs/tags/v1.0.1"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "CI: build of v1.0.1 queued" in pushed.stderr  # git relays the hook's output
        deadline = time.monotonic() + 60
        registry = testbed.registry()
        while time.monotonic() < deadline and not all(
            registry.has_manifest(f"cerniq/{svc}", "v1.0.1") for svc in images.APP_SERVICES
        ):
            time.sleep(0.2)
        sha = git(origin, "rev-parse", "v1.0.1^{commit}").strip()
        log = (origin / app_ci.LOG).read_text()
        assert f"v1.0.1: check run CI success on {sha[:10]} (GitHub answered 201)" in log, log
        for svc in images.APP_SERVICES:
            assert f"v1.0.1: published {testbed.tb.registry_address}/cerniq/{svc}:v1.0.1" in log
        assert [(r["name"], r["conclusion"]) for r in gh.check_runs_json(sha)] == [
            ("CI", "success")
        ]
        assert f"POST /repos/{gh.repo}/check-runs" in gh.requests
    assert gh.token not in log


def test_publish_broken_version_has_no_health(testbed):
    images.publish_app(testbed.registry(), "cerniq", "v0.0.1-broken", broken=True)
    assert "v0.0.1-broken" in testbed.registry().tags("cerniq/web")


def test_up_again_is_a_no_op(testbed):
    assert testbed.up() is False


def test_up_recovers_from_a_killed_run_and_down_leaves_nothing(tmp_path):
    """A second, throwaway testbed (three production app hosts): kill it hard, `up` again with
    two, then `down` to nothing: no host of the first one left behind."""
    from testbed.lifecycle import TestbedManager
    from testbed.plan import Testbed

    three = Testbed(dir=tmp_path / "tb", prefix="cqk", net="10.79.0", production_app_hosts=3)
    manager = TestbedManager(three)
    try:
        manager.up()
        assert "prod-app3" in {s.host.name for s in manager.status() if s.up}
        # a later `up` with the default count (2): its down first removes prod-app3 too
        manager = TestbedManager(Testbed(dir=tmp_path / "tb", prefix="cqk", net="10.79.0"))
        launchers = [s.launcher_pid for s in TestbedManager(three).status()]
        for pid in launchers:  # what a killed session leaves: namespaces, veths, bridge, mounts
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while any(s.up for s in manager.status()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(s.up for s in manager.status())
        assert manager.leftovers()
        assert manager.up() is True
        assert all(s.up for s in manager.status())
    finally:
        manager.down()
    assert manager.leftovers() == []
    assert not (tmp_path / "tb" / "hosts").exists()  # per-host accounts, sudoers.d, homes
    assert not Path("/home/deploy").exists() and not Path("/etc/sudoers.d/cerniq-deploy").exists()
