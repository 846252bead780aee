"""Waves of hosts (`--batch`) on a production of four app hosts: `--batch 50%` is two waves in
series, the two hosts of a wave rolled at the same time, under a keep-alive load through all
four hosts' Traefik with 0 failed requests; `invoke verify` green afterwards. The times come
from the hosts' Docker (each new container's creation), not from our output."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
TESTBED_PRODUCTION_APP_HOSTS = 4
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e waves")
HOSTS = [f"prod-app{i}" for i in range(1, 5)]


@pytest.fixture(scope="module")
def production(testbed):
    images.publish_app(testbed.registry(), "cerniq", "v1.1.0")
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", "v1.0.0", *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    return testbed


def created(testinfra_host, name: str) -> tuple[datetime, datetime]:
    """(first, last) creation time of the host's app containers: its roll's span."""
    out = testinfra_host(name).check_output(
        "docker ps --filter label=com.docker.compose.project=cerniq -q "
        "| xargs docker inspect --format '{{.Created}}'"
    )
    stamps = sorted(
        datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", s.replace("Z", "+00:00")))
        for s in out.split()
    )
    return stamps[0], stamps[-1]


def test_batch_50_percent_is_two_waves_in_series_with_the_hosts_of_a_wave_at_once(
    production, testinfra_host
):
    s = settings.load("production")
    assert [h.name for h in s.app_hosts] == HOSTS
    urls = [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]
    with Load(urls, workers=4) as load:
        load.wait_for_requests(200)
        r = invoke(
            "deploy",
            "--env",
            "production",
            "--version",
            "v1.1.0",
            "--batch",
            "50%",
            *SKIP_CI,
            *CONFIRM,
        )
        load.wait_for_requests(load.result.total + 200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "wave 1/2: prod-app1, prod-app2" in r.stdout
    assert "wave 2/2: prod-app3, prod-app4" in r.stdout
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v1.0.0", "v1.1.0"}
    spans = {name: created(testinfra_host, name) for name in HOSTS}
    first, second = [spans[h] for h in HOSTS[:2]], [spans[h] for h in HOSTS[2:]]
    for wave in (first, second):  # each host of a wave starts before the other one ends
        assert max(start for start, _ in wave) < min(end for _, end in wave), spans
    assert max(end for _, end in first) < min(start for start, _ in second), spans
    for name in HOSTS:
        current = testinfra_host(name).file("/opt/cerniq/current-version").content_string
        assert current.strip() == "v1.1.0"
    assert_verified("production")


def test_the_balancer_keeps_serving_when_a_hosts_traefik_dies_and_a_deploy_brings_it_back(
    production, testinfra_host, root_host
):
    """Production's public URL is its load balancer (HAProxy on prod-lb): with prod-app3's
    Traefik killed, requests through it still all succeed (a refused connection is retried on
    another host, the health check takes the host out); the same deploy again starts Traefik
    on that host, and verify is green."""
    s = settings.load("production")
    assert s.public_url == f"http://{production.tb.balancer('production').ip}:80"
    with Load([s.public_url], workers=4) as load:
        load.wait_for_requests(200)
        root_host("prod-app3").check_output(
            "docker ps -q --filter label=com.docker.compose.project=cerniq-edge | xargs docker kill"
        )
        load.wait_for_requests(load.result.total + 600)
        r = invoke("deploy", "--env", "production", "--version", "v1.1.0", *SKIP_CI, *CONFIRM)
        load.wait_for_requests(load.result.total + 200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "prod-app3: traefik started" in r.stdout
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v1.1.0"}
    assert_verified("production")
