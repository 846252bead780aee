"""deploy.roll_wave: the hosts of a wave rolled at once; failures and interruptions wait for
every host of the wave, then go on to the runner's failure path."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cerniq_ops import deploy, settings
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context, run, step
from tests.support.shellhost import ShellHost, patch_session

pytestmark = pytest.mark.unit


@pytest.fixture
def prod():
    return settings.load("production", target="real")


def ctx_for(s, lines: list[str]) -> Context:
    return Context(s, "deploy", version="v1.3.0", progress=lines.append)


def test_the_hosts_of_a_wave_roll_at_once(prod):
    spans: dict[str, tuple[float, float]] = {}
    both = threading.Barrier(2, timeout=5)  # a serial roll would never get past it

    def roll(spec, _halt):
        start = time.monotonic()
        both.wait()
        spans[spec.name] = (start, time.monotonic())

    deploy.roll_wave(ctx_for(prod, []), prod.app_hosts, roll)
    assert sorted(spans) == ["app1.cerniq.app", "app2.cerniq.app"]


def test_a_host_that_fails_lets_the_others_of_its_wave_end_then_raises(prod):
    ended: list[str] = []

    def roll(spec, _halt):
        if spec.name == "app1.cerniq.app":
            raise StepFailed("api v1.3.0 never became healthy on app1.cerniq.app")
        time.sleep(0.2)
        ended.append(spec.name)

    with pytest.raises(StepFailed, match="never became healthy on app1.cerniq.app"):
        deploy.roll_wave(ctx_for(prod, []), prod.app_hosts, roll)
    assert ended == ["app2.cerniq.app"]


def test_every_failed_host_is_named_and_an_unexpected_exception_keeps_its_kind(prod):
    def both_fail(spec, _halt):
        raise StepFailed(f"{spec.name}: docker pull failed")

    with pytest.raises(StepFailed) as caught:
        deploy.roll_wave(ctx_for(prod, []), prod.app_hosts, both_fail)
    assert str(caught.value) == (
        "app1.cerniq.app: docker pull failed; app2.cerniq.app: docker pull failed"
    )

    def one_breaks(spec, _halt):
        if spec.name == "app2.cerniq.app":
            raise TimeoutError("timed out")

    with pytest.raises(TimeoutError):
        deploy.roll_wave(ctx_for(prod, []), prod.app_hosts, one_breaks)


def test_sigterm_halts_every_host_at_its_next_service_and_the_runner_sees_it(monkeypatch, tmp_path):
    """The signal lands in the main thread while it waits for the hosts; each host sees HALT
    before its next service and ends (its own failure path runs); only then do the runner's
    hooks run and the lock go (the hosts are local shells: tests/support/shellhost.py)."""
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    monkeypatch.setenv("CERNIQ_OVERRIDE_APP_ROOT", str(tmp_path / "app"))
    s = settings.load("production")
    patch_session(monkeypatch, {h.name: ShellHost(h.name) for h in s.hosts})
    lines: list[str] = []
    stopped: list[str] = []

    def roll(spec, halt):
        for service in s.services:
            if halt.is_set():
                stopped.append(spec.name)
                raise StepFailed(f"{spec.name}: stopped before {service}")
            halt.wait(30)  # a service's roll; the signal comes meanwhile (a busy machine too)
        stopped.append(f"{spec.name} ended")

    @step()
    def rolling_update(ctx):
        threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        deploy.roll_wave(ctx, s.app_hosts, roll)

    hooked: list[list[str]] = []

    def switch_back(ctx):
        hooked.append(list(stopped))

    with pytest.raises(StepFailed, match="failed at step 'rolling_update': stopped by SIGTERM"):
        run((rolling_update,), ctx_for(s, lines), on_failure=(switch_back,))
    assert sorted(stopped) == ["app1.cerniq.app", "app2.cerniq.app"]
    assert hooked == [stopped]  # every host had ended when the hooks ran
    assert any("stopping: every host of the wave ends at its next service" in x for x in lines)
    assert not (tmp_path / "app" / "deploy.lock").exists()


def test_a_wave_of_one_host_runs_in_the_calling_thread(prod):
    seen: list[str] = []
    deploy.roll_wave(
        ctx_for(prod, []),
        prod.app_hosts[:1],
        lambda spec, _halt: seen.append(threading.current_thread().name),
    )
    assert seen == [threading.main_thread().name]
