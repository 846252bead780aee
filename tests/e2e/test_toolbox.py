"""The operator's toolbox end to end on one testbed (issue 16): hooks, maintenance, prune, logs,
exec, details. Production runs v1.0.0 from the module's fixture; the tests run in file order, each
leaving production as the next one expects (one testbed for the module keeps it fast)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from datetime import datetime

import pytest
import requests

from cerniq_ops import compose, logs, maintenance, settings, verification
from cerniq_ops.deploy import host_url
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support import interrupt
from tests.support.cli import INVOKE, invoke
from tests.support.recovery import RELEASE

pytestmark = pytest.mark.e2e
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")
APP_HOSTS = ("prod-app1", "prod-app2")


def container_ids(testinfra_host, name="prod-app1") -> str:
    return testinfra_host(name).check_output(
        "docker ps -aq --filter label=com.docker.compose.project=cerniq | sort"
    )


def audit_count(testinfra_host, name="prod-app1") -> int:
    out = testinfra_host(name).run("wc -l < /opt/cerniq/audit.log 2>/dev/null || echo 0")
    return int(out.stdout.strip() or 0)


def deploy(version: str, *extra: str, env: dict | None = None):
    return invoke(
        "deploy", "--env", "production", "--version", version, *SKIP_CI, *CONFIRM, *extra, env=env
    )


@pytest.fixture(scope="module")
def production(testbed):
    """Staging then production on v1.0.0 (staging first: production's migration gate); v1.1.0
    and v1.2.0 published for the later deploys."""
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", "v1.0.0", *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    for version in ("v1.1.0", "v1.2.0"):
        images.publish_app(testbed.registry(), "cerniq", version)
    return testbed


@pytest.fixture
def hooks_dir(tmp_path):
    folder = tmp_path / "hooks"
    folder.mkdir()
    return folder


def write_hook(folder, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


# -- hooks -----------------------------------------------------------------------------------
def test_a_failing_pre_deploy_hook_stops_the_deploy_with_nothing_changed(
    production, testinfra_host, hooks_dir, tmp_path
):
    write_hook(
        hooks_dir, "pre-deploy", 'echo "freeze: $CERNIQ_ENV $CERNIQ_VERSION $CERNIQ_HOSTS"; exit 1'
    )
    record = tmp_path / "failed.txt"
    write_hook(hooks_dir, "on-failure", f'echo "$CERNIQ_PROCEDURE $CERNIQ_FAILED_STEP" > {record}')
    env = {"CERNIQ_OVERRIDE_HOOKS_DIR": str(hooks_dir)}
    before = [(container_ids(testinfra_host, h), audit_count(testinfra_host, h)) for h in APP_HOSTS]
    r = deploy("v1.1.0", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip() == (
        "error: deploy to production stopped by its hook pre-deploy exited 1 "
        "(freeze: production v1.1.0 prod-app1,prod-app2): stopped before any change"
    )
    assert record.read_text() == "deploy pre-deploy\n"
    after = [(container_ids(testinfra_host, h), audit_count(testinfra_host, h)) for h in APP_HOSTS]
    assert after == before
    assert not testinfra_host("prod-app1").file("/opt/cerniq/deploy.lock").exists
    listed = invoke("doctor", "--env", "production", "--json", env=env)
    found = [f for f in json.loads(listed.stdout)["findings"] if f["check"] == "hooks"]
    assert found[0]["detail"] == f"on-failure, pre-deploy in {hooks_dir}"
    # --skip-hooks deploys v1.1.0 (and the post-deploy hook would have been skipped too)
    write_hook(hooks_dir, "post-deploy", f"touch {tmp_path / 'post'}")
    r = deploy("v1.1.0", "--skip-hooks", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (tmp_path / "post").exists() and not record.read_text().count("\n") > 1
    host = testinfra_host("prod-app1")
    assert host.file("/opt/cerniq/current-version").content_string.strip() == "v1.1.0"


# -- maintenance -----------------------------------------------------------------------------
def test_maintenance_under_load_answers_503_with_the_page_and_off_restores_200(production):
    s = settings.load("production")
    url = s.public_url
    with Load([url], workers=4) as load:
        load.wait_for_requests(200)
        assert load.result.failed == 0
        started = time.monotonic()
        on = invoke(
            *("maintenance", "on", "--env", "production", *CONFIRM),
            *("--message", "Database upgrade <until 14:00>", "--retry-after", "120"),
        )
        assert on.returncode == 0, on.stdout + on.stderr
        page = requests.get(f"{url}/version", timeout=5)
        assert page.status_code == 503
        assert "<p>Database upgrade &lt;until 14:00&gt;</p>" in page.text
        assert page.headers["Retry-After"] == "120"
        web = requests.get(f"{url}/web/", timeout=5)
        assert web.status_code == 503 and "Database upgrade" in web.text
        assert requests.get(f"{url}/health", timeout=5).status_code == 200  # the balancer's
        checked = verification.verify(s, "prod-app1")
        line = checked.get("prod-app1", "maintenance")
        assert (line.status, line.detail.split(": ", 1)[1]) == (
            "pass",
            "Database upgrade <until 14:00>",
        )
        during = load.result.total
        load.wait_for_requests(during + 200)
        off = invoke("maintenance", "off", "--env", "production", *CONFIRM)
        ended = time.monotonic()
        assert off.returncode == 0, off.stdout + off.stderr
        after = load.result.total
        load.wait_for_requests(after + 200)
    result = load.result
    assert result.failed > 0 and set(result.failure_kinds) == {f"HTTP 503 from {url}/version"}
    assert started <= result.failed_from and result.failed_until <= ended
    assert set(result.versions) == {"v1.1.0"}
    assert requests.get(f"{url}/version", timeout=5).text.strip() == "v1.1.0"
    assert verification.verify(s, "prod-app1").get("prod-app1", "maintenance").detail == "off"


@pytest.mark.parametrize("state", ["on", "off"])
def test_maintenance_killed_between_hosts_is_named_by_verify_and_the_rerun_converges(
    production, testinfra_host, state
):
    """`maintenance on` (then `off`) SIGKILLed right after host 1's router file changed, host
    2's maybe not yet: verify names the run that died; after `lock.release` the same command
    converges both hosts, confirmed through each host's Traefik."""
    s = settings.load("production")
    args = ("maintenance", state, "--env", "production", *CONFIRM)
    killed = interrupt.kill_after(args, rf"prod-app1: {maintenance.ROUTER} (written|removed)")
    assert killed.seen and not killed.ended, killed.output
    audit = invoke("verify", "--env", "production")
    assert audit.returncode != 0
    assert f"a run of maintenance.{state} died at step route_to_" in audit.stdout, audit.stdout
    released = invoke(*RELEASE)
    assert released.returncode == 0, released.stdout + released.stderr
    again = invoke(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    for name in APP_HOSTS:
        spec = next(h for h in s.app_hosts if h.name == name)
        assert maintenance.answers_maintenance(host_url(s, spec)) is (state == "on")
    checked = assert_verified("production")
    assert {checked.get(name, "maintenance").detail == "off" for name in APP_HOSTS} == {
        state == "off"
    }


# -- prune -----------------------------------------------------------------------------------
def app_images(testinfra_host, name: str) -> list[str]:
    """`service:version` of the app images on host NAME, sorted."""
    out = testinfra_host(name).check_output("docker images --format '{{.Repository}}:{{.Tag}}'")
    app = [line.rsplit("/", 1)[1] for line in out.split() if "/cerniq/" in line]
    return sorted(i for i in app if i.split(":")[0] in ("api", "web", "workers"))


def on_versions(*versions: str) -> list[str]:
    return sorted(f"{svc}:{v}" for v in versions for svc in ("api", "web", "workers"))


def test_deploys_prune_and_prune_keeps_running_and_previous(production, testinfra_host):
    r = deploy("v1.2.0", env={"CERNIQ_OVERRIDE_PRUNE_RETAIN": "1"})  # from v1.1.0, v1.0.0 before
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed 6 container(s)/image(s); kept v1.2.0, v1.1.0" in r.stdout
    for name in APP_HOSTS:  # v1.0.0 went: older than the newest 1, neither running nor previous
        assert app_images(testinfra_host, name) == on_versions("v1.1.0", "v1.2.0")
    s = settings.load("production")
    old = s.image("api", "v1.0.0")
    testinfra_host("prod-app1").check_output(  # an old image and an exited container of the app
        f"docker pull -q {old} && docker run --label com.docker.compose.project=cerniq "
        f"--label com.docker.compose.service=api {old} echo done"
    )
    before = container_ids(testinfra_host)
    dry = invoke("prune", "--env", "production", "--retain", "1", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listed = [line.strip() for line in dry.stdout.splitlines() if "would remove prod-" in line]
    assert len(listed) == 2 and listed[0].startswith("would remove prod-app1: container ")
    assert listed[0].endswith("(cerniq/api, v1.0.0, exited)")
    assert listed[1] == f"would remove prod-app1: image {old}"
    assert container_ids(testinfra_host) == before
    r = invoke("prune", "--env", "production", "--retain", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "== prune production: removed 2 container(s)/image(s)" in r.stdout
    for name in APP_HOSTS:  # running v1.2.0 and previous v1.1.0 stay, whatever --retain says
        assert app_images(testinfra_host, name) == on_versions("v1.1.0", "v1.2.0")
    assert container_ids(testinfra_host) != before
    assert requests.get(f"{s.public_url}/version", timeout=5).text.strip() == "v1.2.0"
    bad = invoke("prune", "--env", "production", "--retain", "0")
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "error: invalid --retain '0': expected a whole number >= 1",
    )


# -- logs ------------------------------------------------------------------------------------
def test_logs_of_both_hosts_merged_in_time_order_with_a_grep(production):
    r = invoke("logs", "--env", "production", "--service", "api", "--grep", "v1.2.0 serving")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines) == list(APP_HOSTS)  # one api per host
    assert all(line.endswith("cerniq api v1.2.0 serving on :80") for line in lines)
    stamps = [logs.time_key(line.split()[2]) for line in lines]
    assert stamps == sorted(stamps) and all(stamps)
    one = invoke("logs", "--env", "production", "--host", "prod-app2", "--lines", "5")
    assert {line.split()[0] for line in one.stdout.splitlines()} == {"prod-app2"}


def test_logs_follow_ends_cleanly_on_ctrl_c(production, testinfra_host):
    proc = subprocess.Popen(
        [INVOKE, "logs", "--env", "production", "--service", "api", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        first = proc.stdout.readline()  # each container's last lines come first
        assert first.split()[0] in APP_HOSTS, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "== stopped following api on 2 host(s)" in out and "Traceback" not in err
    for name in APP_HOSTS:  # closing the channels ended the remote `docker logs --follow`
        left = testinfra_host(name).run("ps -eo args | grep -c '^docker logs' || true")
        assert left.stdout.strip() == "0"


# -- exec ------------------------------------------------------------------------------------
def test_exec_runs_the_arguments_in_each_hosts_container_worst_exit_wins(production):
    s = settings.load("production")
    r = invoke("exec", "--env", "production", *CONFIRM, "--", "cat", "/app/www/version")
    assert r.returncode == 0, r.stdout + r.stderr
    blocks = r.stdout.split("== ")[1:]
    assert [b.split()[0] for b in blocks] == list(APP_HOSTS)
    assert all(b.rstrip().endswith("): exit 0\n   v1.2.0") for b in blocks), r.stdout
    literal = invoke(
        *("exec", "--env", "production", "--host", "prod-app2", "--new", *CONFIRM),
        *("--", "echo", "$(id)", ";", "a b"),
    )
    assert literal.returncode == 0, literal.stdout + literal.stderr
    assert literal.stdout.splitlines() == [
        "== prod-app2 (new api:v1.2.0): exit 0",
        "   $(id) ; a b",  # arguments, not shell text: nothing was expanded
    ]
    failing = invoke(
        *("exec", "--env", "production", "--primary", *CONFIRM),
        *("--", "sh", "-c", "echo on $SERVICE; exit 3"),
    )
    assert failing.returncode == 3 and failing.stdout.splitlines()[1:] == ["   on api"]
    environ = invoke(
        *("exec", "--env", "production", "--primary", *CONFIRM, "--", "cat", "/proc/1/environ")
    )
    password = os.environ[s.db_password_env]
    assert "DATABASE_URL=postgresql://c3rn1q:***@" in environ.stdout
    assert password not in environ.stdout and "%40" not in environ.stdout  # neither encoded
    refused = invoke("exec", "--env", "production", "--", "ls")
    assert (refused.returncode, refused.stderr.strip()) == (
        2,
        "error: PRODUCTION EXEC needs confirmation: pass --confirm 'DEPLOY PRODUCTION' "
        "(not interactive)",
    )


def test_exec_interactive_hands_a_terminal_to_a_shell_in_the_container(production, testinfra_host):
    """`--interactive` under a real terminal: the shell's answers come back through ssh -t and
    docker exec -it, and the session is audited as started."""
    before = audit_count(testinfra_host)
    master, slave = os.openpty()
    argv = [INVOKE, "exec", "--env", "production", "--primary", "--interactive", *CONFIRM]
    proc = subprocess.Popen(
        [*argv, "--", "sh"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    os.write(master, b"echo answer=$((6*7)) in $(cat /app/www/version)\nexit 5\n")
    seen, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:  # until the terminal closes: the session has ended
        if not select.select([master], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: no process holds the terminal any more
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 5, seen  # the shell's exit code is the command's
    assert b"answer=42 in v1.2.0" in seen, seen  # evaluated by a shell in the container
    assert audit_count(testinfra_host) == before + 1
    last = testinfra_host("prod-app1").check_output("tail -n 1 /opt/cerniq/audit.log")
    assert "exec" in last and "started" in last and "interactive: sh" in last, last
    piped = invoke(
        "exec", "--env", "production", "--primary", "--interactive", *CONFIRM, "--", "sh"
    )
    assert (piped.returncode, piped.stderr.strip()) == (
        2,
        "error: --interactive needs a terminal (stdin is not one)",
    )


# -- details ---------------------------------------------------------------------------------
def test_details_per_host_containers_traefik_lock_and_last_change(production):
    r = invoke("details", "--env", "production", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert [h["host"] for h in doc["hosts"]] == list(APP_HOSTS)
    for h in doc["hosts"]:
        app = {c["service"]: c for c in h["containers"] if c["project"] == "cerniq"}
        assert {svc: (c["version"], c["state"], c["health"]) for svc, c in app.items()} == {
            svc: ("v1.2.0", "running", "healthy") for svc in ("api", "web", "workers")
        }
        assert app["api"]["uptime"].startswith("Up ")
        assert [c["service"] for c in h["containers"] if c["project"] == "cerniq-edge"] == [
            "traefik"
        ]
        routed = {x["name"]: x["status"] for x in h["routers"]}
        assert routed == {"api@docker": "enabled", "web@docker": "enabled"}
        servers = {x["name"]: list(x["servers"].values()) for x in h["services"]}
        assert servers["api@docker"] == ["UP"]
        assert (h["active_color"], h["maintenance"]) == (None, False)
    assert doc["lock"] is None
    last = doc["last_change"]
    assert (last["procedure"], last["version"], last["result"]) == ("deploy", "v1.2.0", "ok")
    text = invoke("details", "--env", "production")
    assert "== prod-app2 (" in text.stdout and "== production: lock free" in text.stdout


# -- Traefik: its access log; a changed configuration recreated host by host -------------------
def test_traefik_logs_are_its_access_log_from_every_host(production):
    r = invoke(
        "logs",
        "--env",
        "production",
        "--service",
        "traefik",
        "--since",
        "30s",
        "--grep",
        '"GET /health',
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()  # the balancer checks every host's /health each second
    access = re.compile(r'\[\d\d/\w{3}/\d{4}:[\d:]{8} \+0000\] "GET /health HTTP/1\.[01]" (\d{3}) ')
    assert all(access.search(line) for line in lines), lines[:3]
    ok = {line.split()[0] for line in lines if access.search(line).group(1) == "200"}
    assert ok == set(APP_HOSTS), r.stdout[-2000:]


def test_a_changed_traefik_is_recreated_one_host_at_a_time_with_no_failed_request(
    production, testinfra_host
):
    """The access log turned off changes Traefik's static configuration: the deploy recreates
    each host's Traefik in turn, the next one only once the first routes again and the
    balancer had edge_settle_seconds to see it; through the balancer no request fails."""
    images.publish_app(production.registry(), "cerniq", "v1.3.0")
    s = settings.load("production")
    off = {"CERNIQ_OVERRIDE_TRAEFIK_ACCESS_LOG": "false"}

    def started(name: str) -> datetime:
        stamp = testinfra_host(name).check_output(
            "docker inspect -f '{{.State.StartedAt}}' "
            "$(docker ps -q --filter label=com.docker.compose.service=traefik)"
        )
        return datetime.fromisoformat(stamp.strip()[:26].rstrip("Z") + "+00:00")

    before = {name: started(name) for name in APP_HOSTS}
    with Load([s.public_url], workers=4) as load:
        load.wait_for_requests(100)
        r = deploy("v1.3.0", env=off)
        load.wait_for_requests(load.result.total + 100)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in APP_HOSTS:
        assert f"{name}: traefik recreated: its configuration changed" in r.stdout, r.stdout
    after = {name: started(name) for name in APP_HOSTS}
    assert all(after[name] > before[name] for name in APP_HOSTS)
    first, second = sorted(after.values())
    assert (second - first).total_seconds() >= s.edge_settle_seconds  # one host at a time
    assert load.result.failed == 0, load.result.failures[:5]
    again = invoke("verify", "--env", "production", env=off)
    assert again.returncode == 0, again.stdout + again.stderr
    quiet = invoke("logs", "--env", "production", "--service", "traefik", "--since", "5s")
    assert '"GET /health' not in quiet.stdout


def test_a_deploy_killed_while_a_host_is_drained_is_named_by_verify_and_converges(
    production, testinfra_host
):
    """Killed while host 1 is out of the balancer for its Traefik's recreate (the access log
    back on): `invoke verify` names the drain left behind; the same deploy run again removes
    it and is verified green; through the balancer no request fails meanwhile."""
    images.publish_app(production.registry(), "cerniq", "v1.4.0")
    s = settings.load("production")
    app1 = testinfra_host("prod-app1")
    drain = compose.edge_drain_path(s)
    args = ("deploy", "--env", "production", "--version", "v1.4.0", *SKIP_CI, *CONFIRM)
    with Load([s.public_url], workers=4) as load:
        load.wait_for_requests(100)
        killed = interrupt.kill_after(
            args, r"\] rolling_update", until=lambda: app1.file(drain).exists
        )
        assert killed.seen and not killed.ended, killed.output
        assert app1.file(drain).exists, killed.output
        audit = invoke("verify", "--env", "production")
        released = invoke(*RELEASE)
        assert released.returncode == 0, released.stdout + released.stderr
        rerun = invoke(*args)
        load.wait_for_requests(load.result.total + 100)
    assert audit.returncode != 0
    assert "router cerniq-edge-drain@file: /health answers 503" in audit.stdout, audit.stdout
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "repaired: prod-app1: traefik recreated: its configuration" in rerun.stdout, rerun.stdout
    assert not app1.file(drain).exists
    assert load.result.failed == 0, load.result.failures[:5]
    assert_verified("production")
