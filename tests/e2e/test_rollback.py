"""`invoke rollback`, `rollback.check` and `incident.*` end to end on the testbed."""

import json
import os
import shutil

import psycopg
import pytest

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support.cli import invoke

pytestmark = pytest.mark.e2e
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")
MIGRATION_0400 = '''"""Add negotiations.priority (test migration of a release after v2.0.0)."""


def up(db):
    db.execute("ALTER TABLE negotiations ADD COLUMN priority integer")


def down(db):
    db.execute("ALTER TABLE negotiations DROP COLUMN priority")
'''


def staging():
    return settings.load("staging")


def url() -> str:
    return staging().public_url


def deploy(version: str):
    r = invoke("deploy", "--env", "staging", "--version", version, *SKIP_CI)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def columns() -> list[str]:
    s = staging()
    with psycopg.connect(**s.db_conninfo(s.require_secret("db_password_env"))) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'negotiations' ORDER BY column_name"
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def released(testbed, tmp_path_factory):
    """staging ran v2.0.0, then v2.1.0, whose release added migration 0400."""
    for version in ("v2.0.0", "v2.1.0"):
        images.publish_app(testbed.registry(), "cerniq", version)
    migrations = tmp_path_factory.mktemp("migrations")
    for path in (settings.PROJECT_DIR / "migrations").glob("*.py"):
        shutil.copy(path, migrations)
    os.environ["CERNIQ_OVERRIDE_MIGRATIONS_DIR"] = str(migrations)
    try:
        deploy("v2.0.0")
        s = staging()
        with psycopg.connect(**s.db_conninfo(s.require_secret("db_password_env"))) as conn:
            conn.execute("INSERT INTO tenants (name) VALUES ('acme')")
        (migrations / "0400_add_negotiation_priority.py").write_text(MIGRATION_0400)
        deploy("v2.1.0")
        yield testbed
    finally:
        os.environ.pop("CERNIQ_OVERRIDE_MIGRATIONS_DIR", None)


def test_unknown_version_is_refused_before_any_change(released, testinfra_host):
    before = testinfra_host("staging-app1").check_output("ls /opt/cerniq/incidents | wc -l")
    r = invoke("rollback", "--env", "staging", "--to", "v0.9.9", "--confirm", "ROLLBACK")
    assert r.returncode == 2
    assert r.stderr.startswith("error: version v0.9.9 is not published in ")
    assert r.stderr.strip().endswith("(api, web, workers missing); nothing was changed")
    r = invoke("rollback", "--env", "staging", "--to", "v1.0.0; rm -rf /", "--confirm", "ROLLBACK")
    assert r.returncode == 2 and "invalid version" in r.stderr
    r = invoke("rollback", "--env", "staging", "--to", "v2.0.0")
    assert r.returncode == 2 and "needs confirmation: pass --confirm 'ROLLBACK'" in r.stderr
    assert testinfra_host("staging-app1").check_output("ls /opt/cerniq/incidents | wc -l") == before


def test_rollback_with_db_migrations_down_keeps_data(released, slack, testinfra_host):
    assert "priority" in columns()
    with Load([url()], workers=3) as load:
        load.wait_for_requests(100)
        r = invoke(
            "rollback",
            "--env",
            "staging",
            "--to",
            "v2.0.0",
            "--db-rollback",
            "--confirm",
            "ROLLBACK",
            "--reason",
            "priority column breaks checkout",
            "--json",
        )
        load.wait_for_requests(load.result.total + 100)
    assert r.returncode == 0, r.stderr
    assert load.result.failed == 0, load.result.failures[:5]
    assert set(load.result.versions) == {"v2.1.0", "v2.0.0"}
    assert "priority" not in columns()
    s = staging()
    with psycopg.connect(**s.db_conninfo(s.require_secret("db_password_env"))) as conn:
        assert conn.execute("SELECT name FROM tenants").fetchall() == [("acme",)]
    summary = json.loads(r.stdout)
    incident_id = summary["facts"]["incident"]["id"]
    host = testinfra_host("staging-app1")
    record = json.loads(host.file(f"/opt/cerniq/incidents/{incident_id}.json").content_string)
    assert record["type"] == "rollback" and record["status"] == "completed"
    assert (record["from_version"], record["to_version"]) == ("v2.1.0", "v2.0.0")
    assert {"id", "started_at", "triggered_by", "completed_at", "timeline"} <= set(record)
    assert any("database rolled back to" in e["event"] for e in record["timeline"])
    assert host.file("/opt/cerniq/current-version").content_string.strip() == "v2.0.0"
    texts = slack.texts()
    assert any("ROLLBACK INITIATED" in t and incident_id in t for t in texts)
    assert any("ROLLBACK COMPLETE" in t for t in texts)
    assert invoke("backup.verify", "--env", "staging").returncode == 0
    assert_verified("staging")
    report = invoke("incident.report", "--env", "staging", "--id", incident_id)
    assert report.returncode == 0
    assert "| Incident ID | " + incident_id + " |" in report.stdout
    assert "## Timeline" in report.stdout and "health ok on v2.0.0" in report.stdout


def test_rollback_to_previous_under_load(released, testinfra_host):
    deploy("v2.1.0")
    with Load([url()], workers=3) as load:
        load.wait_for_requests(100)
        r = invoke(
            "rollback", "--env", "staging", "--previous", "--db-rollback", "--confirm", "ROLLBACK"
        )
        load.wait_for_requests(load.result.total + 100)
    assert r.returncode == 0, r.stderr
    assert load.result.failed == 0, load.result.failures[:5]
    assert "staging runs v2.0.0" in r.stdout
    host = testinfra_host("staging-app1")
    assert host.file("/opt/cerniq/current-version").content_string.strip() == "v2.0.0"
    assert "priority" not in columns()  # the schema went back with the code


def test_rollback_check_fires_on_errors_and_not_on_a_healthy_service(released, testinfra_host):
    with Load([url()], workers=2):
        healthy = invoke("rollback.check", "--env", "staging", "--window", "2", "--json")
    assert healthy.returncode == 0, healthy.stderr
    verdict = json.loads(healthy.stdout)
    assert verdict["category"] == "none", verdict
    assert verdict["figures"]["requests"] > 0
    host = testinfra_host("staging-app1")
    api = host.check_output(
        "docker ps -q --filter label=com.docker.compose.project=cerniq "
        "--filter label=com.docker.compose.service=api"
    )
    host.run_test("docker exec %s rm -f /tmp/www/health", api)  # the api goes bad in place
    try:
        with Load([url()], workers=2):
            broken = invoke("rollback.check", "--env", "staging", "--window", "3", "--json")
        verdict = json.loads(broken.stdout)
        assert verdict["category"] == "immediate", verdict
        assert "health check fails" in verdict["rule"]
    finally:
        host.run_test("docker exec %s cp /app/www/health /tmp/www/health", api)


def test_incident_lifecycle(released, slack):
    opened = invoke(
        "incident.open",
        "--env",
        "staging",
        "--severity",
        "P1",
        "--title",
        "checkout down",
        "--json",
    )
    assert opened.returncode == 0, opened.stderr
    record = json.loads(opened.stdout)["facts"]["incident"]
    incident_id = record["id"]
    assert record["severity"] == "P1" and record["status"] == "investigating"
    updated = invoke(
        "incident.update",
        "--env",
        "staging",
        "--id",
        incident_id,
        "--status",
        "identified",
        "--message",
        "bad config",
    )
    assert updated.returncode == 0 and "**Status:** Identified" in updated.stdout
    listed = invoke("incident.list", "--env", "staging", "--json")
    assert any(r["id"] == incident_id for r in json.loads(listed.stdout))
    resolved = invoke(
        "incident.resolve", "--env", "staging", "--id", incident_id, "--message", "config reverted"
    )
    assert resolved.returncode == 0 and f"{incident_id} resolved" in resolved.stdout
    assert any("[P1] checkout down: identified" in t for t in slack.texts())
    bad = invoke("incident.open", "--env", "staging", "--severity", "P7", "--title", "x")
    assert bad.returncode == 2 and "unknown severity 'P7'" in bad.stderr
