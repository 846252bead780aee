"""Interrupted `invoke deploy` converges on the next run (issue 11).

Each test starts the deploy as a user would, SIGKILLs its whole process group (a dropped CI
runner, a closed laptop) right after a chosen progress line of each phase (the pre-deploy
backup, after the migrations, the rolling update of host 1, the verification) or at a random
moment (the seed printed), releases the lock with `invoke lock.release`, and runs the same
deploy again. The re-run must exit 0, say what it repaired, and leave `invoke verify` green; a
keep-alive load through both production hosts' Traefik across the whole sequence must see 0
failed requests (tests/support/recovery.py). The rollback module kills the same rolling update
on host 2 and between hosts. One testbed for the module; each test moves production to a
version it has not run yet.
"""

from __future__ import annotations

import os
import random
import re

import pytest

from tests.support.recovery import (
    assert_on,
    deploy_args,
    deployed_production,
    marker,
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
