"""Interrupted `invoke deploy` and `invoke rollback` converge on the next run (issue 11).

Each test starts the command as a user would, SIGKILLs its whole process group (a dropped CI
runner, a closed laptop) right after a chosen progress line (or at a random moment, the seed
printed), releases the lock with `invoke lock.release`, and runs the same command again. The
re-run must exit 0, say what it repaired, and leave `invoke verify` green; a keep-alive load
through both production hosts' Traefik across the whole sequence must see 0 failed requests.
One testbed for the module; each deploy test moves production to a version it has not run yet.
"""

from __future__ import annotations

import json
import os
import random
import re

import pytest

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support import interrupt
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e recovery test")
RELEASE = ("lock.release", "--env", "production", "--confirm", "RELEASE production")
VERSIONS = [f"v1.{minor}.0" for minor in range(1, 10)]
APP_HOSTS = ("prod-app1", "prod-app2")

# (what, the progress line after which it is killed, seconds after that line)
DEPLOY_KILLS = [
    ("after the files changed on host 1", r"prod-app1: \d+ file\(s\) changed", 0.0),
    ("while a new api replica starts on host 1", r"prod-app1: traefik (running|started)", 0.3),
    (
        "while host 1 drains its old api replica",
        r"prod-app1: api new replica\(s\) healthy",
        1.0,
    ),
    ("between containers replaced and current-version", r"prod-app1: workers: ", 0.0),
    (
        "while host 2 drains its old api replica",
        r"prod-app2: api new replica\(s\) healthy",
        1.0,
    ),
]


ROLLBACK_KILLS = [
    ("while host 1 drains", r"prod-app1: api new replica\(s\) healthy", 1.0),
    ("when host 1 is done and host 2 starts", r"prod-app2: \d+ file\(s\) changed", 0.0),
    ("after the redeploy, before the incident is closed", r"\] verify_rollback", 0.0),
]


def prod():
    return settings.load("production")


def app_urls() -> list[str]:
    s = prod()
    return [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]


def deploy_args(version: str) -> tuple[str, ...]:
    return ("deploy", "--env", "production", "--version", version, *SKIP_CI, *CONFIRM)


def rollback_args(version: str) -> tuple[str, ...]:
    return ("rollback", "--env", "production", "--to", version, "--confirm", "ROLLBACK")


class State:
    """What production ran, in order, and the versions it has not run yet."""

    def __init__(self):
        self.ran: list[str] = []
        self.fresh = list(VERSIONS)

    def next_version(self) -> str:
        return self.fresh.pop(0)


@pytest.fixture(scope="module")
def production(testbed):
    """Staging on v1.0.0 (production's migration gate), production on v1.0.0; the rest of
    VERSIONS published."""
    for version in VERSIONS:
        images.publish_app(testbed.registry(), "cerniq", version)
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", "v1.0.0", *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    state = State()
    state.ran.append("v1.0.0")
    return state


def kill_after(args: tuple[str, ...], pattern: str, delay: float = 0.0) -> str:
    """Run ARGS and kill it DELAY seconds after PATTERN; its output up to the kill."""
    killed = interrupt.kill_after(args, pattern, delay)
    assert killed.seen, f"never printed {pattern!r}:\n{killed.output}"
    assert not killed.ended, f"ended before the kill (delay {delay}s):\n{killed.output}"
    return killed.output


def marker(testinfra_host, name: str, file: str = "current-version") -> str | None:
    f = testinfra_host(name).file(f"/opt/cerniq/{file}")
    return f.content_string.strip() if f.exists else None


def run_killed_then_rerun(args, pattern, delay, testinfra_host, inspect=None):
    """Kill ARGS after PATTERN (+DELAY), release the lock, re-run ARGS, all under load.
    INSPECT(killed output) runs between the kill and the re-run (state left behind)."""
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(100)
        killed = kill_after(args, pattern, delay)
        left = inspect(killed) if inspect else None
        released = invoke(*RELEASE)
        assert released.returncode == 0, released.stdout + released.stderr
        assert "released: " in released.stdout  # the killed run's lock was there
        rerun = invoke(*args)
        load.wait_for_requests(load.result.total + 100)
    assert rerun.returncode == 0, f"killed run:\n{killed}\nre-run:\n{rerun.stdout}{rerun.stderr}"
    died = re.findall(r"\[\d+/\d+\] (\w+)", killed)
    print(f"killed in {died[-1] if died else '-'}; the re-run reported:")
    for line in re.findall(r"repaired: .*", rerun.stdout) or ["no repairs"]:
        print(f"  {line}")
    assert load.result.failed == 0, load.result.failures[:5]
    assert load.result.total > 200
    assert_verified("production")
    return killed, rerun, left


def assert_on(testinfra_host, version: str) -> None:
    for name in APP_HOSTS:
        assert marker(testinfra_host, name) == version
        listed = testinfra_host(name).check_output(
            "docker ps -a --filter label=com.docker.compose.project=cerniq "
            "--format '{{.Image}} {{.State}}'"
        )
        assert sorted(listed.splitlines()) == sorted(
            f"{prod().image(svc, version)} running" for svc in prod().services
        ), listed


# -- deploy ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "pattern", "delay"), DEPLOY_KILLS, ids=[k[0] for k in DEPLOY_KILLS]
)
def test_a_deploy_killed_during_the_rolling_update_converges_on_the_rerun(
    production, testinfra_host, where, pattern, delay
):
    version, before = production.next_version(), production.ran[-1]

    def inspect(_killed: str):
        return marker(testinfra_host, "prod-app1")

    _, rerun, marker_left = run_killed_then_rerun(
        deploy_args(version), pattern, delay, testinfra_host, inspect
    )
    production.ran.append(version)
    assert "deployment complete" in rerun.stdout
    assert_on(testinfra_host, version)
    assert marker(testinfra_host, "prod-app1", "previous-version") == before
    if "drains" in where:
        host = "prod-app1" if "host 1" in where else "prod-app2"
        assert re.search(rf"repaired: .* api replica on {host} ", rerun.stdout), rerun.stdout
    if "current-version" in where and marker_left == before:
        assert (
            f"repaired: current-version on prod-app1 said {before} while its containers ran "
            f"{version}: now {version}"
        ) in rerun.stdout


def test_a_deploy_killed_at_a_random_moment_converges_on_the_rerun(production, testinfra_host):
    seed = int(os.environ.get("CERNIQ_TEST_KILL_SEED") or random.randrange(1_000_000))
    delay = round(random.Random(seed).uniform(0.0, 20.0), 2)
    print(f"random kill: seed {seed} (CERNIQ_TEST_KILL_SEED={seed}): {delay}s into rolling_update")
    version = production.next_version()
    run_killed_then_rerun(deploy_args(version), r"\] rolling_update", delay, testinfra_host)
    production.ran.append(version)
    assert_on(testinfra_host, version)


# -- rollback -------------------------------------------------------------------------------------
def incident_of(testinfra_host, output: str) -> dict:
    found = re.search(r"(INC-\d{14})", output)
    assert found, output
    text = testinfra_host("prod-app1").file(f"/opt/cerniq/incidents/{found[1]}.json")
    return json.loads(text.content_string)


@pytest.mark.parametrize(
    ("where", "pattern", "delay"), ROLLBACK_KILLS, ids=[k[0] for k in ROLLBACK_KILLS]
)
def test_a_rollback_killed_on_the_way_is_resumed_by_the_rerun(
    production, testinfra_host, where, pattern, delay
):
    if len(production.ran) < 2:  # run alone (-k rollback): something to roll back from
        version = production.next_version()
        r = invoke(*deploy_args(version))
        assert r.returncode == 0, r.stdout + r.stderr
        production.ran.append(version)
    target = production.ran[-2]
    killed, rerun, _ = run_killed_then_rerun(rollback_args(target), pattern, delay, testinfra_host)
    production.ran.append(target)
    assert_on(testinfra_host, target)
    opened = incident_of(testinfra_host, killed)
    assert f"repaired: resuming the rollback to {target} of {opened['id']}" in rerun.stdout
    record = incident_of(testinfra_host, rerun.stdout)
    assert record["id"] == opened["id"] and record["status"] == "completed"
    assert any("resumed by" in e["event"] for e in record["timeline"])
