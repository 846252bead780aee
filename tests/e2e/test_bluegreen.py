"""`invoke bluegreen.*` end to end on the testbed: two app hosts, each with its own real Traefik
(file provider), both colors as compose projects, keep-alive load through both entrypoints."""

import os
import subprocess
import time

import pytest

from cerniq_ops import hosts, lock, settings
from testbed import images
from testbed.load import Load
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
QUICK = ("--analysis-seconds", "2")
FAST_GATE = {"CERNIQ_OVERRIDE_BLUEGREEN_HEALTH_RETRIES": "6"}  # a broken color fails in ~3 s
APP_HOSTS = ("prod-app1", "prod-app2")
DYNAMIC = "/opt/cerniq/traefik/dynamic/active.yml"


def prod():
    return settings.load("production")


def app_urls() -> list[str]:
    s = prod()
    return [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]


# The testbed machine is shared: means of ~10 ms swing past 3x with its load, so the latency
# check only counts above half a second here (the error-rate check is unchanged).
SETTINGS = {"CERNIQ_OVERRIDE_BLUEGREEN_LATENCY_FLOOR": "0.5"}


def bluegreen(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return invoke(
        f"bluegreen.{args[0]}", "--env", "production", *args[1:], env={**SETTINGS, **(env or {})}
    )


def state(testinfra_host) -> dict:
    """What a user would look at on each host: marker, Traefik's file, running color images."""
    seen = {}
    for name in APP_HOSTS:
        host = testinfra_host(name)
        seen[name] = (
            host.file("/opt/cerniq/active-env").content_string,
            host.file(DYNAMIC).content_string,
            host.check_output(
                "docker ps --filter label=com.docker.compose.service=api --format '{{.Image}}'"
                " | sort"
            ),
        )
    return seen


def assert_routes(testinfra_host, color: str, versions: dict[str, str]) -> None:
    for name in APP_HOSTS:
        host = testinfra_host(name)
        assert host.file("/opt/cerniq/active-env").content_string == f"{color}\n"
        assert f"service: cerniq-{color}-first" in host.file(DYNAMIC).content_string
        for c, version in versions.items():
            project = host.check_output(
                f"docker ps --filter label=com.docker.compose.project=cerniq-{c} "
                "--filter label=com.docker.compose.service=api --format '{{.Image}} {{.Status}}'"
            )
            assert project.startswith(f"{prod().image('api', version)} Up"), project
        route = host.check_output("curl -s 127.0.0.1:64080/api/http/routers/cerniq-app@file")
        assert f'"service":"cerniq-{color}-first"' in route


@pytest.fixture(scope="module")
def first_rollout(testbed):
    """v1.0.0 on blue (the first rollout), v1.1.0 and a broken v1.2.0 published."""
    registry = testbed.registry()
    for version, broken in (("v1.0.0", False), ("v1.1.0", False), ("v1.2.0", True)):
        images.publish_app(registry, "cerniq", version, broken=broken)
    r = bluegreen("deploy", "--version", "v1.0.0", "--initial", *CONFIRM, *QUICK)
    assert r.returncode == 0, r.stdout + r.stderr
    return testbed


def test_first_rollout_needs_initial_and_then_routes_blue(first_rollout, testinfra_host):
    assert_routes(testinfra_host, "blue", {"blue": "v1.0.0"})
    r = bluegreen("status", "--json")
    assert r.returncode == 0 and '"active": "blue"' in r.stdout


def test_switch_and_switch_back_under_load_have_zero_failed_requests(first_rollout, testinfra_host):
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(200)
        deployed = bluegreen("deploy", "--version", "v1.1.0", *CONFIRM, *QUICK)
        load.wait_for_requests(load.result.total + 200)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert_routes(testinfra_host, "green", {"blue": "v1.0.0", "green": "v1.1.0"})
        back = bluegreen("switch", *CONFIRM, *QUICK)
        load.wait_for_requests(load.result.total + 200)
    assert back.returncode == 0, back.stdout + back.stderr
    result = load.result
    assert result.failed == 0, result.failures[:5]
    assert set(result.versions) == {"v1.0.0", "v1.1.0"} and result.total > 1000
    assert "blue keeps running; stop it with `invoke bluegreen.stop-idle" in deployed.stdout
    assert_routes(testinfra_host, "blue", {"blue": "v1.0.0", "green": "v1.1.0"})
    audit = testinfra_host("prod-app2").file("/opt/cerniq/audit.log").content_string
    assert '"procedure": "bluegreen.switch", "result": "ok", "step": "switch_traffic"' in audit


def test_a_failed_post_switch_analysis_switches_back_with_zero_failed_requests(
    first_rollout, testinfra_host
):
    """green fails its health check during the analysis window (fault injected): Traefik fails
    over to blue at once, the analysis sees green DOWN and switches back."""
    fail_health = (
        "for c in $(docker ps -q --filter label=com.docker.compose.project=cerniq-green); do "
        "docker exec $c rm -f /tmp/www/health; done"
    )
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(100)
        switch = subprocess.Popen(
            [*_invoke_argv("bluegreen.switch", "--analysis-seconds", "30", *CONFIRM)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SETTINGS},
        )
        shown = []
        for line in switch.stdout:
            shown.append(line)
            if "post_switch_analysis" in line:
                break
        for name in APP_HOSTS:
            testinfra_host(name).run(fail_health)
        out, err = switch.communicate(timeout=300)
        load.wait_for_requests(load.result.total + 200)
    out = "".join(shown) + out
    assert switch.returncode == 1, out + err
    assert "failed at step 'post_switch_analysis': green is DOWN in Traefik" in err
    assert "on failure: switch_back: switched back: cerniq-app routes cerniq-blue-first" in out
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v1.0.0", "v1.1.0"}
    assert_routes(testinfra_host, "blue", {"blue": "v1.0.0", "green": "v1.1.0"})
    for name in APP_HOSTS:
        host = testinfra_host(name)
        assert host.file("/opt/cerniq/current-version").content_string == "v1.0.0\n"


def test_broken_idle_color_is_never_switched_to(first_rollout, testinfra_host):
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(100)
        deployed = bluegreen("deploy", "--version", "v1.2.0", *CONFIRM, *QUICK, env=FAST_GATE)
        before = state(testinfra_host)
        switched = bluegreen("switch", *CONFIRM)
        canaried = bluegreen("canary", "--steps", "10", *CONFIRM)
        load.wait_for_requests(load.result.total + 100)
    assert deployed.returncode == 1
    assert "failed at step 'wait_idle_healthy': green (v1.2.0) is not healthy" in deployed.stderr
    assert "traffic stays on blue" in deployed.stderr
    for r in (switched, canaried):
        assert r.returncode == 1
        assert "green is not healthy on prod-app1" in r.stderr
        assert "refusing to send it traffic; nothing was changed" in r.stderr
    assert state(testinfra_host) == before
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v1.0.0"}
    assert_routes(testinfra_host, "blue", {"blue": "v1.0.0", "green": "v1.2.0"})


def test_canary_of_a_failing_color_goes_back_to_0_and_serves_no_more_errors(
    first_rollout, testinfra_host
):
    """v1.1.0 passes its gates; its api then crashes under canary traffic (fault injected)."""
    kill = (
        "docker ps -q --filter label=com.docker.compose.project=cerniq-green "
        "--filter label=com.docker.compose.service=api | xargs -r docker kill"
    )
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(100)
        canary = subprocess.Popen(
            [
                *_invoke_argv("bluegreen.canary", "--version", "v1.1.0"),
                *("--steps", "10,50", "--pause", "6", *CONFIRM),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SETTINGS},
        )
        deadline = time.monotonic() + 120
        while "v1.1.0" not in load.result.versions and time.monotonic() < deadline:
            time.sleep(0.05)
        for name in APP_HOSTS:
            testinfra_host(name).run(kill)
        out, err = canary.communicate(timeout=300)
        ended = time.monotonic()
        # requests sent to the crashed api before the switch back may hang until the client's
        # 5 s timeout: count what fails after that
        load.wait_for_requests(load.result.total + 10**6, timeout=6)
        settled = ended + 5.5
        load.wait_for_requests(load.result.total + 500)
    assert canary.returncode == 1, out + err
    assert "failed at step 'canary'" in err
    assert "10% to green; analysing for 6s" in out
    assert "on failure: switch_back: switched back: cerniq-app routes cerniq-blue-first" in out
    assert load.result.versions["v1.1.0"] > 0
    late = [(round(t - ended, 2), what) for t, what in load.result.failures if t > settled]
    assert not late, f"errors after the canary went back to 0%: {late[:5]}"
    assert load.result.total > 1000
    for name in APP_HOSTS:
        dynamic = testinfra_host(name).file(DYNAMIC).content_string
        assert "service: cerniq-blue-first" in dynamic and "weighted" not in dynamic
        assert testinfra_host(name).file("/opt/cerniq/active-env").content_string == "blue\n"


def _invoke_argv(task: str, *args: str) -> list[str]:
    from tests.support.cli import INVOKE

    return [INVOKE, task, "--env", "production", *args]


def test_traefik_not_running_refuses_and_leaves_the_config_untouched(first_rollout, testinfra_host):
    edge = (
        "docker ps -q --filter label=com.docker.compose.project=cerniq-edge"
        " --filter label=com.docker.compose.service=traefik"
    )
    host = testinfra_host("prod-app2")
    container = host.check_output(edge)
    before = state(testinfra_host)
    host.check_output(f"docker stop {container}")
    try:
        r = bluegreen("switch", *CONFIRM)
        assert state(testinfra_host) == before
    finally:
        host.check_output(f"docker start {container}")
        deadline = time.monotonic() + 30
        while host.run("curl -sf 127.0.0.1:64080/api/overview").rc and time.monotonic() < deadline:
            time.sleep(0.2)
    assert r.returncode == 1
    assert "prod-app2: Traefik's API does not answer on :64080: refusing to switch" in r.stderr


def test_corrupted_marker_is_a_clear_error_and_changes_nothing(first_rollout, testinfra_host):
    host = testinfra_host("prod-app1")
    host.check_output("echo purple > /opt/cerniq/active-env")
    try:
        before = state(testinfra_host)
        r = bluegreen("switch", *CONFIRM)
        assert state(testinfra_host) == before
    finally:
        host.check_output("echo blue > /opt/cerniq/active-env")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "active-env on prod-app1 holds 'purple', not 'blue' or 'green'" in r.stderr


def test_concurrent_switch_is_refused_with_exit_3(first_rollout, testinfra_host):
    s = prod()
    record = lock.new_record("bluegreen.switch", None, "switching")
    before = state(testinfra_host)
    with hosts.session(s, [s.primary_host]) as session:
        primary = session.inventory.get_host(s.primary_host.name)
        lock.acquire(primary, s, record)
        try:
            r = bluegreen("switch", *CONFIRM)
        finally:
            lock.release(primary, s, record)
    assert r.returncode == 3
    assert r.stderr.startswith(f"error: deploy lock on production held by {record.holder}")
    assert state(testinfra_host) == before


def test_dry_run_and_bad_input_change_nothing(first_rollout, testinfra_host):
    before = state(testinfra_host)
    dry = bluegreen("deploy", "--version", "v1.2.0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would change prod-app1: cerniq app files | /opt/cerniq/docker-compose.green.yml" in (
        dry.stdout
    )
    assert "would route cerniq-app to cerniq-green-first on 2 host(s)" in dry.stdout
    assert "dry run complete: nothing changed" in dry.stdout
    diff = bluegreen("deploy", "--version", "v1.2.0", "--dry-run", "--diff")
    assert diff.returncode == 0, diff.stderr
    for name in APP_HOSTS:
        lines = [x.strip() for x in diff.stdout.splitlines() if x.strip().startswith(f"{name}: ")]
        assert f"{name}: +    image: {prod().image('api', 'v1.2.0')}" in lines, diff.stdout
        assert f"{name}: /opt/cerniq/.env.green (secret: keys only)" in lines, diff.stdout
        assert f"{name}: ~ CERNIQ_VERSION=*** (value changed)" in lines, diff.stdout
        assert f"{name}: +++ {DYNAMIC} (planned)" in lines, diff.stdout
        assert any("cerniq-green-first" in x and x.startswith(f"{name}: +") for x in lines)
    assert os.environ["CERNIQ_TESTBED_PRODUCTION_DB_PASSWORD"] not in diff.stdout
    for args, message in (
        (("switch",), "needs confirmation: pass --confirm 'DEPLOY PRODUCTION'"),
        (("switch", "--to", "purple", *CONFIRM), "invalid --to 'purple'"),
        (("canary", "--steps", "50,10", *CONFIRM), "invalid --steps '50,10'"),
        (("deploy", "--version", "1.2; rm -rf /", *CONFIRM), "invalid version"),
    ):
        r = bluegreen(*args)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    assert state(testinfra_host) == before


def test_rollback_switches_back_to_the_idle_color_under_load(first_rollout, testinfra_host):
    """`invoke rollback` on a blue-green environment: the idle color still runs the previous
    version, so the rollback is a switch back (no redeploy), with an incident record."""
    active = testinfra_host("prod-app1").file("/opt/cerniq/active-env").content_string.strip()
    before = testinfra_host("prod-app1").file("/opt/cerniq/current-version").content_string.strip()
    target = "v1.1.0" if before != "v1.1.0" else "v1.0.0"
    deployed = bluegreen("deploy", "--version", target, *CONFIRM, *QUICK)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(200)
        r = invoke("rollback", "--env", "production", "--previous", "--confirm", "ROLLBACK")
        load.wait_for_requests(load.result.total + 200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"switched back to {active}, which still runs {before}" in r.stdout
    assert load.result.failed == 0, load.result.failures[:5]
    for name in APP_HOSTS:
        host = testinfra_host(name)
        assert host.file("/opt/cerniq/active-env").content_string.strip() == active
        assert host.file("/opt/cerniq/current-version").content_string.strip() == before
    incidents = testinfra_host("prod-app1").check_output("cat /opt/cerniq/incidents/INC-*.json")
    assert '"status": "completed"' in incidents and f'"to_version": "{before}"' in incidents


def test_rolling_deploy_is_refused_on_a_blue_green_environment(first_rollout, testinfra_host):
    before = state(testinfra_host)
    r = invoke("deploy", "--env", "production", "--version", "v1.1.0", "--skip-ci-check", *CONFIRM)
    assert r.returncode == 2
    assert "runs blue-green (active-env: " in r.stderr and "invoke bluegreen.deploy" in r.stderr
    assert state(testinfra_host) == before


def test_stop_idle_waits_for_the_scale_down_delay_then_stops_only_the_idle_color(
    first_rollout, testinfra_host
):
    early = bluegreen("stop-idle", *CONFIRM)
    assert early.returncode == 1 and "green is kept 600s for a quick switch back" in early.stderr
    r = bluegreen("stop-idle", "--delay", "0", *CONFIRM)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in APP_HOSTS:
        host = testinfra_host(name)
        running = host.check_output(
            "docker ps --filter label=com.docker.compose.service=api "
            "--format '{{.Label \"com.docker.compose.project\"}}'"
        ).split()
        assert "cerniq-blue" in running and "cerniq-green" not in running
    status = bluegreen("status")
    assert "blue (active)  v1.0.0   healthy" in status.stdout
