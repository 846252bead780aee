"""The fault-injection sequence of the recovery e2e modules (issue 11), on production's two
hosts: start a command as a user would, SIGKILL its whole process group after a progress line
(a dropped CI runner, a closed laptop), release the lock with `invoke lock.release` as the tool
says, run the same command again; all under a keep-alive load through both hosts' Traefik.
The re-run must exit 0, the load see 0 failed requests, and `invoke verify` pass."""

from __future__ import annotations

import re
from collections.abc import Callable

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support import interrupt
from tests.support.cli import invoke

CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e recovery test")
RELEASE = ("lock.release", "--env", "production", "--confirm", "RELEASE production")
APP_HOSTS = ("prod-app1", "prod-app2")


def prod() -> settings.Settings:
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

    def __init__(self, versions: list[str]):
        self.ran: list[str] = []
        self.fresh = list(versions)

    def next_version(self) -> str:
        return self.fresh.pop(0)


def deployed_production(testbed, versions: list[str]) -> State:
    """VERSIONS published; staging (production's migration gate) then production on the
    first of them."""
    for version in versions:
        images.publish_app(testbed.registry(), "cerniq", version)
    first = versions[0]
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", first, *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    state = State(versions[1:])
    state.ran.append(first)
    return state


def marker(testinfra_host, name: str, file: str = "current-version") -> str | None:
    f = testinfra_host(name).file(f"/opt/cerniq/{file}")
    return f.content_string.strip() if f.exists else None


def run_killed_then_rerun(
    args: tuple[str, ...],
    pattern: str,
    delay: float = 0.0,
    between: Callable[[str], object] | None = None,
    may_end: bool = False,
) -> tuple[str, str, object]:
    """Kill ARGS DELAY seconds after PATTERN, BETWEEN(killed output) (what the kill left),
    release the lock, re-run ARGS; under load. (killed output, re-run stdout, BETWEEN's value).
    MAY_END: a random kill may come after the run ended by itself (said, and accepted)."""
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(100)
        killed = interrupt.kill_after(args, pattern, delay)
        assert killed.seen, f"never printed {pattern!r}:\n{killed.output}"
        assert may_end or not killed.ended, f"ended before the kill ({delay}s):\n{killed.output}"
        left = between(killed.output) if between else None
        released = invoke(*RELEASE)
        assert released.returncode == 0, released.stdout + released.stderr
        # the killed run's lock was there, unless the kill came after the run released it
        # (its last step had started; the process was still on its way out)
        steps = re.findall(r"\[(\d+)/(\d+)\]", killed.output)
        last_started = bool(steps) and steps[-1][0] == steps[-1][1]
        if not killed.ended and not last_started:
            assert "released: " in released.stdout, killed.output + released.stdout
        rerun = invoke(*args)
        load.wait_for_requests(load.result.total + 100)
    assert rerun.returncode == 0, (
        f"killed run:\n{killed.output}\nre-run:\n{rerun.stdout}{rerun.stderr}"
    )
    died = re.findall(r"\[\d+/\d+\] (\w+)", killed.output)
    ended = " (it had ended by itself)" if killed.ended else ""
    print(f"killed in {died[-1] if died else '-'}{ended}; the re-run reported:")
    for line in re.findall(r"repaired: .*", rerun.stdout) or ["no repairs"]:
        print(f"  {line}")
    assert load.result.failed == 0, load.result.failures[:5]
    assert load.result.total > 200
    assert_verified("production")
    return killed.output, rerun.stdout, left


def assert_on(testinfra_host, version: str) -> None:
    """Both hosts on VERSION: the marker, and one running container of it per service."""
    for name in APP_HOSTS:
        assert marker(testinfra_host, name) == version
        listed = testinfra_host(name).check_output(
            "docker ps -a --filter label=com.docker.compose.project=cerniq "
            "--format '{{.Image}} {{.State}}'"
        )
        assert sorted(listed.splitlines()) == sorted(
            f"{prod().image(svc, version)} running" for svc in prod().services
        ), listed
