"""`invoke deploy` end to end on the testbed: real hosts, dockerd, registry, Traefik, PostgreSQL.
Slack and GitHub are local stand-ins (tests/support/outside.py)."""

import json
import os

import pytest

from cerniq_ops import hosts, lock, settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")


def prod():
    return settings.load("production")


def app_urls() -> list[str]:
    s = prod()
    return [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]


def audit_count(testinfra_host, name="prod-app1") -> int:
    return int(
        testinfra_host(name)
        .run("wc -l < /opt/cerniq/audit.log 2>/dev/null || echo 0")
        .stdout.strip()
        or 0
    )


def container_ids(testinfra_host, name="prod-app1") -> str:
    return testinfra_host(name).check_output(
        "docker ps -q --filter label=com.docker.compose.project=cerniq | sort"
    )


@pytest.fixture(scope="module")
def production_v1(testbed):
    """Staging then production on v1.0.0 (staging first: production's migration gate)."""
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", "v1.0.0", *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    images.publish_app(testbed.registry(), "cerniq", "v1.1.0")
    return testbed


def test_rolling_deploy_under_load_has_zero_failed_requests(
    production_v1, slack, github, testinfra_host
):
    github.conclusions["v1.1.0"] = "success"
    password = os.environ[prod().db_password_env]
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(200)
        r = invoke(
            "deploy",
            "--env",
            "production",
            "--version",
            "v1.1.0",
            "--batch",
            "1",
            *CONFIRM,
            "--json",
        )
        load.wait_for_requests(load.result.total + 200)
    result = load.result
    assert r.returncode == 0, r.stderr
    assert result.failed == 0, result.failures[:5]
    assert result.total > 1000 and set(result.versions) == {"v1.0.0", "v1.1.0"}
    summary = json.loads(r.stdout)
    assert summary["ok"] and summary["version"] == "v1.1.0"
    assert [s["name"] for s in summary["steps"]] == [
        "validate",
        "pre_deployment_checks",
        "create_backup",
        "pull_images",
        "run_migrations",
        "rolling_update",
        "post_deployment_verification",
        "record_release",
        "prune_old_versions",
        "notify_deployment",
    ]
    assert all(s["status"] == "ok" for s in summary["steps"])
    assert any("completed" in t for t in slack.texts())
    for name in ("prod-app1", "prod-app2"):
        host = testinfra_host(name)
        assert host.file("/opt/cerniq/current-version").content_string.strip() == "v1.1.0"
        assert host.file("/opt/cerniq/previous-version").content_string.strip() == "v1.0.0"
        assert host.file("/opt/cerniq/.env").mode == 0o600
        images_running = host.check_output(
            "docker ps --filter label=com.docker.compose.project=cerniq --format '{{.Image}}'"
        ).split()
        assert sorted(i.rsplit("/", 1)[1] for i in images_running) == [
            "api:v1.1.0",
            "web:v1.1.0",
            "workers:v1.1.0",
        ]
        audit_log = host.file("/opt/cerniq/audit.log").content_string
        steps = [json.loads(line) for line in audit_log.splitlines()]
        assert any(
            s["step"] == "rolling_update" and s["result"] == "ok" and s["version"] == "v1.1.0"
            for s in steps
        )
        assert password not in audit_log
    assert password not in r.stdout + r.stderr
    assert all(password not in raw for raw in slack.raw)
    assert invoke("backup.verify", "--env", "production").returncode == 0
    assert_verified("production")  # the audit of every host agrees


def test_rerun_of_a_converged_deploy_changes_nothing(production_v1, testinfra_host):
    before = container_ids(testinfra_host)
    r = invoke("deploy", "--env", "production", "--version", "v1.1.0", *SKIP_CI, *CONFIRM)
    assert r.returncode == 0, r.stderr
    assert "every host already runs v1.1.0: nothing to change" in r.stdout
    assert container_ids(testinfra_host) == before


def test_broken_version_never_receives_traffic(production_v1, slack, github, testinfra_host):
    images.publish_app(production_v1.registry(), "cerniq", "v1.2.0-rc.1", broken=True)
    github.conclusions["v1.2.0-rc.1"] = "success"
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(200)
        r = invoke("deploy", "--env", "production", "--version", "v1.2.0-rc.1", *CONFIRM)
        load.wait_for_requests(load.result.total + 200)
    assert r.returncode == 1
    assert "failed at step 'rolling_update'" in r.stderr
    assert "never became healthy on prod-app1" in r.stderr
    assert "hosts: prod-app1 runs v1.1.0; prod-app2 runs v1.1.0" in r.stderr  # every service
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v1.1.0"}
    assert any("FAILED" in t for t in slack.texts())
    s = prod()
    with hosts.session(s, [s.primary_host]) as state:
        assert lock.status(state.inventory.get_host(s.primary_host.name), s) is None
    app1, app2 = testinfra_host("prod-app1"), testinfra_host("prod-app2")
    last = json.loads(app1.check_output("tail -n 2 /opt/cerniq/audit.log").splitlines()[0])
    assert (last["step"], last["result"]) == ("rolling_update", "failed")
    for host in (app1, app2):
        assert host.file("/opt/cerniq/current-version").content_string.strip() == "v1.1.0"
        assert "api:v1.1.0" in host.file("/opt/cerniq/docker-compose.yml").content_string
    assert "api:v1.2.0-rc.1" not in app2.check_output("docker ps --format '{{.Image}}'")


def test_red_ci_stops_the_deploy_before_any_change(production_v1, github, testinfra_host):
    github.conclusions["v1.0.0"] = "failure"
    before = container_ids(testinfra_host)
    r = invoke("deploy", "--env", "production", "--version", "v1.0.0", *CONFIRM)
    assert r.returncode == 1
    assert "failed at step 'pre_deployment_checks': CI is not green for v1.0.0" in r.stderr
    assert container_ids(testinfra_host) == before


def test_concurrent_deploy_is_refused_with_exit_3(production_v1, testinfra_host):
    s = prod()
    record = lock.new_record("deploy", "v1.1.0", "release 1.1")
    with hosts.session(s, [s.primary_host]) as state:
        primary = state.inventory.get_host(s.primary_host.name)
        lock.acquire(primary, s, record)
        try:
            r = invoke("deploy", "--env", "production", "--version", "v1.0.0", *SKIP_CI, *CONFIRM)
            shown = invoke("lock.status", "--env", "production")
        finally:
            lock.release(primary, s, record)
    assert r.returncode == 3
    assert r.stderr.startswith(f"error: deploy lock on production held by {record.holder}")
    assert (
        f"(v1.1.0: release 1.1), pid {record.pid} on {record.machine}; "
        "run `invoke lock.status --env production`"
    ) in r.stderr
    assert "held by" in shown.stdout and "holder running" in shown.stdout


@pytest.mark.parametrize(
    ("args", "drop", "message"),
    [
        (("--env", "prod", "--version", "v1.0.0"), (), "unknown environment 'prod'"),
        (("--env", "production", "--version", "1.2.3; rm -rf /"), (), "invalid version"),
        (("--env", "production", "--version", "v9.9.9"), (), "v9.9.9 is not published"),
        (
            ("--env", "production", "--version", "v1.0.0"),
            ("CERNIQ_TESTBED_PRODUCTION_DB_PASSWORD",),
            "missing secret: set the environment variable CERNIQ_TESTBED_PRODUCTION_DB_PASSWORD",
        ),
        (
            ("--env", "production", "--version", "v1.0.0", "--skip-ci-check"),
            ("GITHUB_TOKEN",),
            "needs confirmation: pass --confirm 'DEPLOY PRODUCTION'",
        ),
        (
            ("--env", "production", "--version", "v1.0.0"),
            ("GITHUB_TOKEN",),
            "missing secret: set the environment variable GITHUB_TOKEN",
        ),
        (
            ("--env", "production", "--version", "v1.0.0", *SKIP_CI, "--confirm", "yes"),
            (),
            "needs --confirm 'DEPLOY PRODUCTION'; got 'yes'",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    production_v1, testinfra_host, args, drop, message
):
    before = (audit_count(testinfra_host), container_ids(testinfra_host))
    r = invoke("deploy", *args, drop=drop)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert message in r.stderr and "Traceback" not in r.stderr
    assert (audit_count(testinfra_host), container_ids(testinfra_host)) == before


def test_dry_run_diff_after_a_settings_change_shows_exactly_that_file_redacted(
    production_v1, testinfra_host
):
    """Production converged on v1.1.0; a new Redis password (a settings change) changes only
    the env file: the dry run names that file on each host and its changed key, never a
    value, and changes nothing."""
    before = (audit_count(testinfra_host), container_ids(testinfra_host))
    env_before = testinfra_host("prod-app1").file("/opt/cerniq/.env").content_string
    new_password = "n3w-redis@#/:secret"
    r = invoke(
        *("deploy", "--env", "production", "--version", "v1.1.0", *SKIP_CI),
        *("--dry-run", "--diff"),
        env={prod().redis_password_env: new_password},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    planned = [x.strip() for x in r.stdout.splitlines() if "would change " in x]
    assert planned == [
        f"would change {h}: cerniq app files | /opt/cerniq/.env" for h in ("prod-app1", "prod-app2")
    ]
    for h in ("prod-app1", "prod-app2"):
        diff = [x.strip() for x in r.stdout.splitlines() if x.strip().startswith(f"{h}: ")]
        assert diff == [
            f"{h}: /opt/cerniq/.env (secret: keys only)",
            f"{h}: ~ REDIS_URL=*** (value changed)",
        ], r.stdout
    assert "n3w-redis" not in r.stdout + r.stderr and "n3w-redis%40" not in r.stdout
    assert (audit_count(testinfra_host), container_ids(testinfra_host)) == before
    assert testinfra_host("prod-app1").file("/opt/cerniq/.env").content_string == env_before


def test_diff_without_a_dry_run_is_refused_before_anything(production_v1, testinfra_host):
    r = invoke("deploy", "--env", "production", "--version", "v1.1.0", *SKIP_CI, "--diff")
    assert r.returncode == 2 and r.stderr.startswith("error: --diff shows what a dry run")


def test_dry_run_lists_planned_changes_and_changes_nothing(production_v1, testinfra_host):
    before = (audit_count(testinfra_host), container_ids(testinfra_host))
    r = invoke("deploy", "--env", "production", "--version", "v1.0.0", *SKIP_CI, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would change prod-app1: cerniq app files | /opt/cerniq/docker-compose.yml" in r.stdout
    assert "dry run complete: nothing changed" in r.stdout
    assert (audit_count(testinfra_host), container_ids(testinfra_host)) == before
    assert (
        testinfra_host("prod-app1").file("/opt/cerniq/current-version").content_string.strip()
        == "v1.1.0"
    )
