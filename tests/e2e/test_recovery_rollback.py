"""Interrupted `invoke rollback` is resumed by the next run (issue 11): SIGKILLed (its whole
process group) right after the incident is opened, while host 1 drains, between host 1's
containers and its current-version, when host 2's files are written (both hosts roll at
once), and after the redeploy before the incident is closed; then the lock released as the
tool says and the same rollback run again.
The re-run resumes the same incident, exits 0 and leaves `invoke verify` green, with 0 failed
requests under load across the whole sequence (tests/support/recovery.py)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.cli import invoke
from tests.support.recovery import (
    assert_on,
    deploy_args,
    deployed_production,
    rollback_args,
    run_killed_then_rerun,
)

pytestmark = pytest.mark.e2e

# (what, the progress line after which it is killed, seconds after that line)
ROLLBACK_KILLS = [
    ("after the incident is opened, before any change", r"\] check_database", 0.0),
    ("while host 1 drains", r"prod-app1: api new replica\(s\) healthy", 1.0),
    ("between host 1's containers and its current-version", r"prod-app1: workers: ", 0.0),
    (
        "when host 2's files are written, host 1 rolling beside it",
        r"prod-app2: \d+ file\(s\) changed",
        0.0,
    ),
    ("after the redeploy, before the incident is closed", r"\] verify_rollback", 0.0),
]


@pytest.fixture(scope="module")
def production(testbed):
    """Production ran v1.0.0 then v1.1.0: something to roll back from."""
    state = deployed_production(testbed, ["v1.0.0", "v1.1.0"])
    version = state.next_version()
    r = invoke(*deploy_args(version))
    assert r.returncode == 0, r.stdout + r.stderr
    state.ran.append(version)
    return state


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
    target = production.ran[-2]
    killed, rerun, _ = run_killed_then_rerun(rollback_args(target), pattern, delay)
    production.ran.append(target)
    assert_on(testinfra_host, target)
    opened = incident_of(testinfra_host, killed)
    assert f"repaired: resuming the rollback to {target} of {opened['id']}" in rerun
    record = incident_of(testinfra_host, rerun)
    assert record["id"] == opened["id"] and record["status"] == "completed"
    assert any("resumed by" in e["event"] for e in record["timeline"])
