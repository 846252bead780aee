"""Pure builders and small clients of the deploy procedure, tested without hosts."""

import json
import subprocess

import pytest
import yaml

from cerniq_ops import audit, compose, lock, notify, rollout, settings
from cerniq_ops.clients import github
from cerniq_ops.deploy import app_documents
from cerniq_ops.deploy_inputs import batches, validate_version
from cerniq_ops.errors import BadInput
from cerniq_ops.output import register_secret

pytestmark = pytest.mark.unit


@pytest.fixture
def prod():
    return settings.load("production", target="real")


@pytest.mark.parametrize("bad", ["1.2.3; rm -rf /", "v1.2", "latest", "", "v1.2.3 ", "$(id)", None])
def test_versions_that_are_not_release_tags_are_refused(bad):
    with pytest.raises(BadInput, match="invalid version"):
        validate_version(bad)


@pytest.mark.parametrize("good", ["v1.4.2", "v10.0.0", "v1.5.0-rc.1"])
def test_release_tags_are_accepted(good):
    assert validate_version(good) == good


def test_batches_split_hosts_into_waves(prod):
    hosts = prod.app_hosts
    assert [[h.name for h in w] for w in batches(hosts, "1")] == [
        ["app1.cerniq.app"],
        ["app2.cerniq.app"],
    ]
    assert len(batches(hosts, "50%")) == 2
    assert len(batches(hosts, None)) == 1 and len(batches(hosts, "100%")) == 1
    for bad in ("0", "-1", "abc", "150%", "0%"):
        with pytest.raises(BadInput, match="invalid --batch"):
            batches(hosts, bad)


def test_compose_documents_pin_every_image_to_the_version(prod):
    docs = app_documents(prod, "v1.4.2", "pw")
    app = yaml.safe_load(docs["docker-compose.yml"][0])
    assert {svc: spec["image"] for svc, spec in app["services"].items()} == {
        "api": "registry.cerniq.app/cerniq/api:v1.4.2",
        "web": "registry.cerniq.app/cerniq/web:v1.4.2",
        "workers": "registry.cerniq.app/cerniq/workers:v1.4.2",
    }
    assert app["networks"]["default"] == {"external": True, "name": "cerniq"}
    assert docs[".env"][1] == "600" and docs["docker-compose.yml"][1] == "644"
    edge = yaml.safe_load(docs["docker-compose.traefik.yml"][0])["services"]["traefik"]
    assert edge["image"] == "registry.cerniq.app/cerniq/traefik:v3.7.15"
    assert "--global.checkNewVersion=false" in edge["command"]
    assert "--providers.providersThrottleDuration=0s" in edge["command"]
    assert "127.0.0.1:64080:8080" in edge["ports"] and "64000:64000" in edge["ports"]


def test_traefik_labels_do_not_depend_on_the_version(prod):
    a = yaml.safe_load(compose.app_compose(prod, "v1.0.0"))["services"]
    b = yaml.safe_load(compose.app_compose(prod, "v2.0.0"))["services"]
    assert a["api"]["labels"] == b["api"]["labels"]
    assert "traefik.http.services.api.loadbalancer.healthcheck.path=/health" in a["api"]["labels"]
    assert "labels" not in a["workers"]


def test_scale_up_never_recreates():
    stack = compose.Stack(("docker", "compose"), "cerniq", "/opt/cerniq/docker-compose.yml")
    assert compose.scale_up(stack, "api", 2) == [
        "docker",
        "compose",
        "-p",
        "cerniq",
        "-f",
        "/opt/cerniq/docker-compose.yml",
        "up",
        "-d",
        "--no-deps",
        "--no-recreate",
        "--scale",
        "api=2",
        "api",
    ]


def test_parse_ps_reads_compose_label_output():
    out = (
        "abc123 reg/cerniq/api:v1 api running Up 3 seconds (healthy)\n"
        "def456 reg/cerniq/api:v2 api running Up 1 second (health: starting)\n"
    )
    a, b = rollout.parse_ps(out)
    assert (a.id, a.image, a.service, a.healthy) == ("abc123", "reg/cerniq/api:v1", "api", True)
    assert b.healthy is False


def test_env_file_holds_the_password_for_the_app_only(prod):
    text = compose.env_file(prod, "v1.0.0", "s3cret-pw")
    assert "DATABASE_URL=postgresql://c3rn1q:s3cret-pw@db1.cerniq.app:64032/cerniq" in text


def test_lock_is_taken_atomically_by_exactly_one_of_many(tmp_path):
    path = str(tmp_path / "deploy.lock")
    commands = [
        lock.acquire_command(path, lock.new_record("deploy", "v1", f"run {i}")) for i in range(8)
    ]
    procs = [
        subprocess.Popen(["bash", "-c", c], stdout=subprocess.PIPE, text=True) for c in commands
    ]
    codes = [p.wait() for p in procs]
    assert sorted(codes) == [0] + [3] * 7
    held = lock.parse((tmp_path / "deploy.lock").read_text())
    winner = codes.index(0)
    assert held.message == f"run {winner}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.lock"]  # no temp files left


def test_lock_holder_is_described_for_the_user():
    record = lock.LockRecord(
        "ana@ci-runner", "deploy", "v1.4.2", "release 1.4", "2026-11-28T10:02:00Z", "t"
    )
    assert record.describe("production") == (
        "deploy lock on production held by ana@ci-runner since 2026-11-28 10:02:00 UTC "
        "(v1.4.2: release 1.4)"
    )


def test_audit_lines_are_json_and_redacted():
    register_secret("pw-that-leaks")
    line = audit.audit_line(
        env="staging",
        procedure="deploy",
        step="x",
        result="failed",
        who="me",
        version="v1",
        detail="bad dsn password=pw-that-leaks",
    )
    record = json.loads(line)
    assert record["detail"] == "bad dsn password=***"
    assert set(record) >= {"at", "who", "env", "procedure", "version", "step", "result"}


def test_slack_payload_has_blocks_and_a_text_fallback():
    payload = notify.slack_payload(
        notify.Fields("Deployment to production completed", {"Version": "v1.2.0"}, True, "body")
    )
    assert payload["text"].endswith("Deployment to production completed")
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][1]["fields"][0]["text"] == "*Version*\nv1.2.0"


def test_slack_429_is_retried_after_retry_after(slack):
    slack.rate_limit_next = 1
    delivery = notify.post(slack.webhook, {"text": "hello"})
    assert delivery.sent and slack.texts() == ["hello"] and len(slack.raw) == 2


def test_a_slack_failure_is_reported_not_raised():
    delivery = notify.post("http://127.0.0.1:9/hooks", {"text": "x"}, timeout=1)
    assert not delivery.sent and "unreachable" in delivery.detail


def test_announcement_follows_the_seed_template():
    text = notify.deployment_announcement(
        "v1.2.0", "production", "2026-11-28 10:00 UTC", ["Feature A (#123)"]
    )
    assert text.startswith("**Deployment:** v1.2.0\n**Environment:** Production")
    assert "- Feature A (#123)" in text and "Contact @oncall if issues." in text


def test_ci_status_reads_the_runs_of_the_tags_commit(github):
    github.conclusions.update({"v1.0.0": "success", "v1.1.0": "failure", "v1.2.0": None})
    assert github_status(github, "v1.0.0").passing
    failed = github_status(github, "v1.1.0")
    assert failed.conclusion == "failure" and "CI" in failed.detail
    assert github_status(github, "v1.2.0").conclusion == "pending"
    assert github_status(github, "v9.9.9").conclusion == "none"


def github_status(server, ref):
    return github.ci_status(server.url, "cerniq/cerniq-app", ref, server.token)
