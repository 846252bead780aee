"""Interrupted `invoke deploy` converges on the next run (issue 11).

Each test starts the deploy as a user would, SIGKILLs its whole process group (a dropped CI
runner, a closed laptop) right after a chosen progress line of each phase (the pre-deploy
backup, after the migrations, the rolling update of host 1, the verification) or at a random
moment (the seed printed), releases the lock with `invoke lock.release`, and runs the same
deploy again. The re-run must exit 0, say what it repaired, and leave `invoke verify` green; a
keep-alive load through both production hosts' Traefik across the whole sequence must see 0
failed requests (tests/support/recovery.py). The rollback module kills the same rolling update
on host 2. A rolling failure on one host (a name conflict that fails its scale-up) reports what
every host runs and leaves each host's files matching its containers; the next wave stays
untouched; the re-run converges. One testbed for the module; each test moves production to a
version it has not run yet.
"""

from __future__ import annotations

import os
import random
import re

import pytest

from cerniq_ops.verification import assert_verified
from testbed.load import Load
from tests.support.cli import invoke
from tests.support.recovery import (
    APP_HOSTS,
    app_urls,
    assert_on,
    deploy_args,
    deployed_production,
    marker,
    prod,
    run_killed_then_rerun,
)

pytestmark = pytest.mark.e2e
VERSIONS = [f"v1.{minor}.0" for minor in range(0, 13)]

# (what, the progress line after which it is killed, seconds after that line)
DEPLOY_KILLS = [
    ("during the pre-deploy backup", r"\] create_backup", 0.4),
    ("after the migrations, before any host changed", r"\] rolling_update", 0.0),
    ("while a new api replica starts on host 1", r"prod-app1: traefik (running|started)", 0.3),
    (
        "while host 1 drains its old api replica",
        r"prod-app1: api new replica\(s\) healthy",
        1.0,
    ),
    ("between containers replaced and current-version", r"prod-app1: workers: ", 0.0),
    ("after both hosts, while the deploy is verified", r"\] post_deployment_verification", 0.0),
]


@pytest.fixture(scope="module")
def production(testbed):
    """Staging and production on v1.0.0; the rest of VERSIONS published."""
    return deployed_production(testbed, VERSIONS)


# -- deploy ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "pattern", "delay"), DEPLOY_KILLS, ids=[k[0] for k in DEPLOY_KILLS]
)
def test_a_deploy_killed_on_the_way_converges_on_the_rerun(
    production, testinfra_host, where, pattern, delay
):
    version, before = production.next_version(), production.ran[-1]

    def inspect(_killed: str):
        return marker(testinfra_host, "prod-app1")

    _, rerun, marker_left = run_killed_then_rerun(deploy_args(version), pattern, delay, inspect)
    production.ran.append(version)
    assert "deployment complete" in rerun
    assert_on(testinfra_host, version)
    assert marker(testinfra_host, "prod-app1", "previous-version") == before
    if "drains" in where:
        host = "prod-app1" if "host 1" in where else "prod-app2"
        assert re.search(rf"repaired: .* api replica on {host} ", rerun), rerun
    if "current-version" in where and marker_left == before:
        assert (
            f"repaired: current-version on prod-app1 said {before} while its containers ran "
            f"{version}: now {version}"
        ) in rerun


def test_a_deploy_killed_at_a_random_moment_converges_on_the_rerun(production, testinfra_host):
    seed = int(os.environ.get("CERNIQ_TEST_KILL_SEED") or random.randrange(1_000_000))
    delay = round(random.Random(seed).uniform(0.0, 20.0), 2)
    print(f"random kill: seed {seed} (CERNIQ_TEST_KILL_SEED={seed}): {delay}s into rolling_update")
    version = production.next_version()
    run_killed_then_rerun(deploy_args(version), r"\] rolling_update", delay)
    production.ran.append(version)
    assert_on(testinfra_host, version)


# -- a rolling failure on one host ---------------------------------------------------------------
def squat_next_replica(root_host, name: str, service: str = "api") -> list[str]:
    """Containers without compose labels named as compose v1 names SERVICE's next replicas on
    NAME: that host's scale-up fails (a name conflict) before any of its containers change."""
    host = root_host(name)
    names = host.check_output(
        "docker ps -a --filter label=com.docker.compose.project=cerniq "
        f"--filter label=com.docker.compose.service={service} --format '{{{{.Names}}}}'"
    ).split()
    top = max(int(n.rsplit("_", 1)[1]) for n in names)
    image = host.check_output(f"docker inspect --format '{{{{.Config.Image}}}}' {names[0]}").strip()
    squatters = [f"cerniq_{service}_{n}" for n in range(top + 1, top + 4)]
    for squatter in squatters:
        host.check_output(f"docker create --name {squatter} {image}")
    return squatters


def containers_and_files(testinfra_host, name: str) -> tuple[str, str, str]:
    host = testinfra_host(name)
    listed = host.check_output(
        "docker ps -a --filter label=com.docker.compose.project=cerniq "
        "--format '{{.ID}} {{.Image}}'"
    )
    compose_file = host.file("/opt/cerniq/docker-compose.yml").content_string
    return listed, compose_file, marker(testinfra_host, name) or ""


def files_say(testinfra_host, name: str, version: str) -> None:
    """NAME's compose file and current-version say VERSION, and its containers run it."""
    listed, compose_file, current = containers_and_files(testinfra_host, name)
    assert current == version
    images = sorted(line.split()[1] for line in listed.splitlines())
    assert images == sorted(prod().image(svc, version) for svc in prod().services), listed
    assert all(f"image: {prod().image(svc, version)}" in compose_file for svc in prod().services)


@pytest.mark.parametrize(
    ("broken", "batch"),
    [("prod-app2", None), ("prod-app1", "1")],
    ids=["host 2 of 2 fails while host 1 rolls beside it", "wave 1 of 2 fails, wave 2 untouched"],
)
def test_a_rolling_failure_on_one_host_reports_every_host_and_the_rerun_converges(
    production, testinfra_host, root_host, broken, batch
):
    version, before = production.next_version(), production.ran[-1]
    other = next(h for h in APP_HOSTS if h != broken)
    untouched = containers_and_files(testinfra_host, other) if batch else None
    squatters = squat_next_replica(root_host, broken)
    args = deploy_args(version) + (("--batch", batch) if batch else ())
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(100)
        failed = invoke(*args)
        load.wait_for_requests(load.result.total + 100)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"{broken}: `docker compose -p cerniq" in failed.stderr
    assert f'Conflict. The container name "/{squatters[0]}" is already in use' in failed.stderr
    runs = {broken: before, other: before if batch else version}
    assert (
        f"hosts: prod-app1 runs {runs['prod-app1']}; prod-app2 runs {runs['prod-app2']}"
    ) in failed.stderr
    assert load.result.failed == 0, load.result.failures[:5]
    files_say(testinfra_host, broken, before)  # the failed host: files match its containers
    if batch:  # the next wave was never touched: same containers, same files
        assert containers_and_files(testinfra_host, other) == untouched
    else:
        files_say(testinfra_host, other, version)
    assert invoke("lock.status", "--env", "production").stdout.startswith("no deploy lock")

    root_host(broken).check_output(f"docker rm {' '.join(squatters)}")
    rerun = invoke(*args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    production.ran.append(version)
    assert_on(testinfra_host, version)
    assert_verified("production")
