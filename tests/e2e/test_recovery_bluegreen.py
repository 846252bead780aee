"""Fault injection on the testbed: `invoke bluegreen.deploy`, `bluegreen.switch` and
`bluegreen.canary` killed (SIGKILL of the whole process group, as a dropped CI runner) after
chosen progress lines and at a random moment (the seed is printed), then the lock released as
the tool says and the same command run again. The re-run exits 0 and says what it repaired,
`invoke verify` passes, and a keep-alive load through every host's Traefik across the whole
sequence sees 0 failed requests."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading

import pytest

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support.cli import INVOKE, PROJECT, invoke

pytestmark = pytest.mark.e2e
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
QUICK = ("--analysis-seconds", "3")
APP_HOSTS = ("prod-app1", "prod-app2")
# the shared machine's latency swings: only the error-rate check counts here (as test_bluegreen)
SETTINGS = {"CERNIQ_OVERRIDE_BLUEGREEN_LATENCY_FLOOR": "0.5"}


def app_urls() -> list[str]:
    s = settings.load("production")
    return [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]


def bluegreen(*args: str) -> subprocess.CompletedProcess:
    return invoke(f"bluegreen.{args[0]}", "--env", "production", *args[1:], env=SETTINGS)


def kill_when(args: tuple[str, ...], pattern: str | None, after: float | None = None) -> str:
    """Start `invoke bluegreen.<args>` in its own process group; SIGKILL the group once a
    progress line matches PATTERN (or AFTER seconds); the output seen until then."""
    proc = subprocess.Popen(
        [INVOKE, f"bluegreen.{args[0]}", "--env", "production", *args[1:]],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **SETTINGS},
        start_new_session=True,
    )
    seen: list[str] = []
    timer = None
    if after is not None:
        timer = threading.Timer(after, lambda: _kill(proc))
        timer.start()
    for line in proc.stdout:
        seen.append(line)
        if pattern and re.search(pattern, line):
            _kill(proc)
            break
    proc.wait(timeout=600)
    if timer:
        timer.cancel()
    out = "".join(seen)
    if after is not None and proc.returncode == 0:
        print(f"the run finished before the kill at {after:.1f}s")
    else:
        assert proc.returncode == -signal.SIGKILL, f"not killed (exit {proc.returncode}):\n{out}"
    return out


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def rerun(args: tuple[str, ...]) -> subprocess.CompletedProcess:
    """The same command again; a held lock is released the way the error says, then again."""
    r = bluegreen(*args)
    if r.returncode == 3:
        assert "lock" in r.stderr, r.stderr
        released = invoke("lock.release", "--env", "production", "--confirm", "RELEASE production")
        assert released.returncode == 0, released.stdout + released.stderr
        r = bluegreen(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def active(testinfra_host) -> tuple[str, str]:
    host = testinfra_host("prod-app1")
    color = host.file("/opt/cerniq/active-env").content_string.strip()
    return color, host.file("/opt/cerniq/current-version").content_string.strip()


def assert_consistent(testinfra_host, color: str, version: str) -> None:
    for name in APP_HOSTS:
        host = testinfra_host(name)
        assert host.file("/opt/cerniq/active-env").content_string == f"{color}\n"
        assert host.file("/opt/cerniq/current-version").content_string == f"{version}\n"
        assert not host.file("/opt/cerniq/bluegreen.pending").exists
        route = host.check_output("curl -s 127.0.0.1:64080/api/http/routers/cerniq-app@file")
        assert f'"service":"cerniq-{color}-first"' in route
        exited = host.check_output(
            f"docker ps -a --filter label=com.docker.compose.project=cerniq-{color} "
            "--filter status=exited --filter status=created -q"
        )
        assert exited == "", f"{name}: non-running containers of {color}: {exited}"


@pytest.fixture(scope="module")
def bluegreen_env(testbed):
    """v1.0.0 on blue (first rollout), v1.1.0 published, one verified backup (blue-green takes
    none; `invoke verify` wants one)."""
    registry = testbed.registry()
    for version in ("v1.0.0", "v1.1.0"):
        images.publish_app(registry, "cerniq", version)
    r = bluegreen("deploy", "--version", "v1.0.0", "--initial", *CONFIRM, *QUICK)
    assert r.returncode == 0, r.stdout + r.stderr
    for task in ("backup.create", "backup.verify"):
        r = invoke(task, "--env", "production")
        assert r.returncode == 0, r.stdout + r.stderr
    assert_verified("production")
    return testbed


DEPLOY_KILLS = [
    r"prod-app1: cerniq-\w+ up at",  # between the two hosts' `up`
    r"\] wait_idle_healthy",
    r"\] smoke_idle",
    r"\] switch_traffic",
    r"\] update_marker",
    r"\] post_switch_analysis",
]


def test_killed_bluegreen_deploy_converges_on_rerun_with_zero_failed_requests(
    bluegreen_env, testinfra_host
):
    seed = int(os.environ.get("CERNIQ_RECOVERY_SEED", random.randrange(10**6)))
    print(f"random kill seed: {seed} (CERNIQ_RECOVERY_SEED={seed} repeats it)")
    rng = random.Random(seed)
    points = [(p, None) for p in DEPLOY_KILLS] + [(None, rng.uniform(3, 25))]
    repaired = []
    with Load(app_urls(), workers=4, max_seconds=3600) as load:
        load.wait_for_requests(100)
        for pattern, after in points:
            color, version = active(testinfra_host)
            target = "v1.1.0" if version == "v1.0.0" else "v1.0.0"
            args = ("deploy", "--version", target, *CONFIRM, *QUICK)
            killed = kill_when(args, pattern, after)
            r = rerun(args)
            repaired += [line for line in r.stdout.splitlines() if "repaired:" in line]
            want = target if pattern else active(testinfra_host)[1]
            assert active(testinfra_host)[1] == want, f"killed at {pattern or after}:\n{killed}"
            assert_consistent(testinfra_host, *active(testinfra_host))
            assert_verified("production")
        load.wait_for_requests(load.result.total + 200)
    print("\n".join(repaired))
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v1.0.0", "v1.1.0"}
    assert any("resuming it (markers, checks, the watch)" in line for line in repaired), repaired


SWITCH_KILLS = [
    r"\] check_idle_ready",
    r"\] smoke_idle",
    r"prod-app1: cerniq-app -> \S+ written",  # between the hosts' writes
    r"\] switch_traffic",
    r"\] update_marker",
    r"\] verify_switch",
    r"\] post_switch_analysis",
]


def test_killed_bluegreen_switch_converges_on_rerun_with_zero_failed_requests(
    bluegreen_env, testinfra_host
):
    seed = int(os.environ.get("CERNIQ_RECOVERY_SEED", random.randrange(10**6)))
    print(f"random kill seed: {seed} (CERNIQ_RECOVERY_SEED={seed} repeats it)")
    rng = random.Random(seed)
    points = [(p, None) for p in SWITCH_KILLS] + [(None, rng.uniform(2, 12))]
    with Load(app_urls(), workers=4, max_seconds=3600) as load:
        load.wait_for_requests(100)
        for pattern, after in points:
            color, _ = active(testinfra_host)
            target = "green" if color == "blue" else "blue"
            args = ("switch", *CONFIRM, *QUICK)
            killed = kill_when(args, pattern, after)
            r = rerun(args)
            if pattern and "written" in pattern:  # killed mid-switch: settled first
                settled = [line for line in r.stdout.splitlines() if "repaired:" in line]
                print("\n".join(settled))
                assert any("put back to" in x or "resuming it" in x for x in settled), r.stdout
            now, version = active(testinfra_host)
            if pattern:  # the re-run finished what the killed run was asked for
                assert now == target, f"killed at {pattern}:\n{killed}"
            assert_consistent(testinfra_host, now, version)
            assert_verified("production")
        load.wait_for_requests(load.result.total + 200)
    assert load.result.failed == 0, load.result.failures[:5]


def test_a_canary_killed_at_10_percent_is_put_back_then_run_from_0(bluegreen_env, testinfra_host):
    color, version = active(testinfra_host)
    new = "green" if color == "blue" else "blue"
    args = ("canary", "--steps", "10,50", "--pause", "3", *CONFIRM, *QUICK)
    with Load(app_urls(), workers=4, max_seconds=3600) as load:
        load.wait_for_requests(100)
        kill_when(args, r"10% to \w+; analysing")
        split = testinfra_host("prod-app1").file("/opt/cerniq/traefik/dynamic/active.yml")
        assert "weighted" in split.content_string  # the killed run left a split behind
        r = rerun(args)
        load.wait_for_requests(load.result.total + 200)
    assert f"put back to cerniq-{color}-first on every host" in r.stdout, r.stdout
    first_step = r.stdout.index(f"10% to {new}; analysing")
    assert r.stdout.index("put back to") < first_step  # 0% before anything else, then 10%
    assert load.result.failed == 0, load.result.failures[:5]
    assert_consistent(testinfra_host, new, active(testinfra_host)[1])
    assert_verified("production")
