"""`invoke verify` and `invoke doctor` end to end on the testbed: a real deploy, then breakages
made by hand on one host, each caught and named (host, check, what and where)."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cerniq_ops import settings
from cerniq_ops.deploy_inputs import VERSION_RE
from cerniq_ops.procedure import Context
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
ROOT = "/opt/cerniq"
QUIET = lambda _line: None  # noqa: E731


def words(stdout: str) -> str:
    """STDOUT with each line's runs of spaces as one (verify's columns widen with the checks)."""
    return "\n".join(" ".join(line.split()) for line in stdout.splitlines())


def fail_line(stdout: str, host: str, check: str) -> str:
    """The `FAIL  <host>  <check>  ...` line of verify's output (AssertionError if none)."""
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:3] == ["FAIL", host, check]:
            return line
    raise AssertionError(f"no FAIL line for {check} on {host} in:\n{stdout}")


def run_on(host, command: str) -> str:
    out = host.run(command)
    assert out.rc == 0, f"{command}: {out.stderr}"
    return out.stdout


def put(host, path: str, content: str) -> None:
    run_on(host, f"printf '%s' {shlex.quote(content)} > {shlex.quote(path)}")


def wait_until(what: str, check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _deployed_version(host) -> str | None:
    f = host.file(f"{ROOT}/current-version")
    version = f.content_string.strip() if f.exists else ""
    return version if VERSION_RE.match(version) else None


@pytest.fixture(scope="module")
def deployed(testbed, testinfra_host):
    """Staging then production deployed with the deploy procedure (a converged re-run when an
    earlier test left them deployed), and production's newest backup verified."""
    from cerniq_ops import backup
    from cerniq_ops.deploy import deploy

    for env, app1 in (("staging", "staging-app1"), ("production", "prod-app1")):
        version = _deployed_version(testinfra_host(app1)) or "v1.0.0"
        options = {"skip_ci_check": True, "reason": "test", "confirm": "DEPLOY PRODUCTION"}
        deploy(Context(settings.load(env), "deploy", version, options=options, progress=QUIET))
    backup.verify(Context(settings.load("production"), "backup.verify", progress=QUIET))
    return testbed


# -- verify ----------------------------------------------------------------------------------
def test_verify_passes_after_a_deploy(deployed, testinfra_host, tmp_path):
    junit = tmp_path / "verify.xml"
    r = invoke("verify", "--env", "production", "--junit", str(junit))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("verify production: ok: ")
    for host in ("prod-app1", "prod-app2"):
        for check in ("files", "markers", "containers", "traefik", "disk", "audit_log"):
            assert any(line.split()[:3] == ["PASS", host, check] for line in lines), r.stdout
        if not testinfra_host(host).file(f"{ROOT}/active-env").exists:
            assert f"SKIP {host} active_color no blue-green in production" in words(r.stdout)
    assert any(line.split()[:3] == ["PASS", "prod-app1", "deploy_lock"] for line in lines)
    assert any(line.split()[:3] == ["PASS", "prod-db", "backup"] for line in lines)
    cases = ET.parse(junit).getroot().iter("testcase")
    names = {c.get("name") for c in cases}
    assert {"test_containers[prod-app1]", "test_backup[prod-db]"} <= names
    with_json = invoke("verify", "--env", "production", "--host", "prod-db", "--json")
    doc = json.loads(with_json.stdout)
    assert with_json.returncode == 0 and doc["ok"] and doc["hosts"] == ["prod-db"]


def test_stopped_container_is_caught_and_named(deployed, testinfra_host):
    app2 = testinfra_host("prod-app2")
    api = run_on(
        app2,
        "docker ps -q --no-trunc --filter label=com.docker.compose.project=cerniq"
        " --filter label=com.docker.compose.service=api",
    ).split()[0]
    run_on(app2, f"docker stop {api}")
    try:
        r = invoke("verify", "--env", "production", "--host", "prod-app2")
        assert r.returncode == 1
        line = fail_line(r.stdout, "prod-app2", "containers")
        assert f"api container {api[:12]} is exited" in line
        assert "wrong: containers@prod-app2" in r.stdout
    finally:
        run_on(app2, f"docker start {api}")
        wait_until(
            "the api container to be healthy again",
            lambda: (
                app2.run(f"docker inspect -f '{{{{.State.Health.Status}}}}' {api}").stdout.strip()
                == "healthy"
            ),
        )


def test_wrong_marker_is_caught_and_named(deployed, testinfra_host):
    app1 = testinfra_host("prod-app1")
    path = f"{ROOT}/current-version"
    original = app1.file(path).content_string
    running = original.strip()
    try:
        put(app1, path, "latest\n")
        r = invoke("verify", "--env", "production", "--host", "prod-app1")
        assert r.returncode == 1
        assert f"{path} says 'latest', not a version like v1.4.2" in fail_line(
            r.stdout, "prod-app1", "markers"
        )
        put(app1, path, "v9.9.9\n")  # a valid version, but not what runs
        r = invoke("verify", "--env", "production", "--host", "prod-app1")
        assert r.returncode == 1
        line = fail_line(r.stdout, "prod-app1", "containers")
        assert f"runs api:{running}, current-version says v9.9.9" in line
    finally:
        put(app1, path, original)


def test_stale_lock_is_caught_and_named(deployed, testinfra_host):
    app1 = testinfra_host("prod-app1")
    since = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lock = {
        "holder": "ana@ci-runner",
        "procedure": "deploy",
        "version": "v1.4.2",
        "message": "release 1.4",
        "since": since,
        "token": "deadbeef",
    }
    put(app1, f"{ROOT}/deploy.lock", json.dumps(lock))
    try:
        r = invoke("verify", "--env", "production", "--host", "prod-app1")
        assert r.returncode == 1
        line = fail_line(r.stdout, "prod-app1", "deploy_lock")
        assert f"{ROOT}/deploy.lock is stale: held by ana@ci-runner for deploy v1.4.2" in line
        assert since in line
    finally:
        run_on(app1, f"rm -f {ROOT}/deploy.lock")


def test_old_backup_is_caught_and_named(deployed, testinfra_host):
    s = settings.load("production")
    db = testinfra_host("prod-db")
    manifests = run_on(db, f"ls {s.backup_dir}/*.manifest.json").split()
    originals = {m: db.file(m).content_string for m in manifests}
    old = datetime.now(UTC) - timedelta(days=3)
    try:
        for path, text in originals.items():  # every backup 3 days old: none since then
            doc = json.loads(text)
            doc["started"] = doc["finished"] = old.strftime("%Y-%m-%dT%H:%M:%SZ")
            put(db, path, json.dumps(doc, indent=2, sort_keys=True))
        r = invoke("verify", "--env", "production", "--host", "prod-db")
        assert r.returncode == 1
        line = fail_line(r.stdout, "prod-db", "backup")
        assert "is 3.0 days old" in line and f"in {s.backup_dir} on prod-db" in line
    finally:
        for path, text in originals.items():
            put(db, path, text)


def test_rewritten_audit_log_is_caught(deployed, testinfra_host):
    assert invoke("verify", "--env", "production", "--host", "prod-app2").returncode == 0
    app2 = testinfra_host("prod-app2")
    log = f"{ROOT}/audit.log"
    run_on(app2, f"cp -p {log} {log}.saved")
    try:
        run_on(app2, f'sed -i \'1s/"result": "ok"/"result": "failed"/\' {log}')
        r = invoke("verify", "--env", "production", "--host", "prod-app2")
        assert r.returncode == 1
        assert f"{log} was rewritten: its first" in fail_line(r.stdout, "prod-app2", "audit_log")
    finally:
        run_on(app2, f"mv -f {log}.saved {log}")


def test_traefik_routing_the_idle_color_is_caught(deployed, testinfra_host):
    """Blue-green on staging (one app host): verify passes, then active.yml is pointed at the
    idle color by hand; the config and Traefik's API both disagree with active-env."""
    bluegreen = pytest.importorskip("cerniq_ops.bluegreen", reason="blue-green not landed yet")
    app = testinfra_host("staging-app1")
    marker = app.file(f"{ROOT}/active-env")
    if not marker.exists:
        s = settings.load("staging")
        version = _deployed_version(app) or "v1.0.0"
        options = {"initial": True, "analysis_seconds": 0, "confirm": s.confirm_phrase}
        ctx = Context(s, "bluegreen.deploy", version, options=options, progress=QUIET)
        bluegreen.run_procedure(bluegreen.DEPLOY, ctx)
    active = app.file(f"{ROOT}/active-env").content_string.strip()
    idle = "green" if active == "blue" else "blue"
    r = invoke("verify", "--env", "staging", "--host", "staging-app1")
    expected = f"PASS staging-app1 active_color cerniq-app -> cerniq-{active}"
    assert expected in words(r.stdout), r.stdout
    config = f"{ROOT}/traefik/dynamic/active.yml"
    original, routed_before = app.file(config).content_string, _routed(app)
    doc = yaml.safe_load(original)
    doc["http"]["routers"]["cerniq-app"]["service"] = f"cerniq-{idle}"
    try:
        put(app, f"{ROOT}/traefik/dynamic/.active.tmp", yaml.safe_dump(doc))
        run_on(app, f"mv -f {ROOT}/traefik/dynamic/.active.tmp {config}")
        wait_until("Traefik to load the edited config", lambda: _routed(app) == f"cerniq-{idle}")
        r = invoke("verify", "--env", "staging", "--host", "staging-app1")
        assert r.returncode == 1
        line = fail_line(r.stdout, "staging-app1", "active_color")
        assert f"{config} routes cerniq-app to cerniq-{idle}, but active-env says {active}" in line
        assert f"Traefik's API routes cerniq-app@file to cerniq-{idle}" in line
    finally:
        put(app, f"{ROOT}/traefik/dynamic/.active.tmp", original)
        run_on(app, f"mv -f {ROOT}/traefik/dynamic/.active.tmp {config}")
        wait_until("Traefik to load the restored config", lambda: _routed(app) == routed_before)


def _routed(host) -> str | None:
    out = host.run("curl -s -m 3 http://127.0.0.1:64080/api/http/routers/cerniq-app@file")
    try:
        return str(json.loads(out.stdout).get("service")).split("@")[0]
    except ValueError:
        return None


# -- doctor ----------------------------------------------------------------------------------
def test_doctor_reports_a_host_with_sshd_stopped(deployed):
    r = invoke("doctor", "--env", "production")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "doctor: ok:" in r.stdout
    # sshd is PID 1 of a testbed host (stopping it stops the host): make port 22 refuse
    # connections inside the host, which is what a client sees of a stopped sshd.
    ns = deployed.tb.netns(deployed.tb.host("prod-app2"))
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-I", *rule], check=True)
    try:
        r = invoke("doctor", "--env", "production")
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-D", *rule], check=True)
    assert r.returncode == 1
    row = next(
        line for line in r.stdout.splitlines() if line.split()[:3] == ["ssh", "prod-app2", "FAIL"]
    )
    assert "connection refused by" in row and "sshd not running?" in row
    assert "start sshd on prod-app2" in row
    assert "doctor: FAILED: " in r.stdout
    assert not any(
        line.split()[:3] == ["ssh", "prod-app1", "FAIL"] for line in r.stdout.splitlines()
    )


def test_doctor_tells_host_key_and_auth_failures_apart(deployed, tmp_path):
    from cerniq_ops import doctor

    s = settings.load("production")
    spec = next(h for h in s.hosts if h.name == "prod-app1")
    other = next(h for h in s.hosts if h.name == "prod-db")
    known = Path(spec.data["ssh_known_hosts_file"]).read_text().splitlines()
    other_key = next(line for line in known if line.startswith(other.name + ","))
    empty, wrong = tmp_path / "empty", tmp_path / "wrong"
    empty.write_text("")
    wrong.write_text(f"{spec.address} {' '.join(other_key.split()[1:])}\n")
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)

    def first(**data) -> doctor.Finding:
        return doctor.check_host(s, replace(spec, data={**spec.data, **data}))[0]

    assert first().status == "ok"
    unknown = first(ssh_known_hosts_file=str(empty))
    assert (unknown.status, unknown.detail) == (
        "FAIL",
        f"host key of {spec.address} unknown (not in {empty})",
    )
    mismatch = first(ssh_known_hosts_file=str(wrong))
    assert mismatch.detail.startswith(f"HOST KEY MISMATCH for {spec.address}")
    denied = first(ssh_key=str(stranger))
    assert denied.detail == f"authentication failed for deploy@{spec.address}:22 (key {stranger})"
