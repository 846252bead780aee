"""Incident records, status updates and reports (seed 11.1, 13.2, 15.2), without hosts."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from cerniq_ops import incident
from cerniq_ops.errors import BadInput

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 28, 10, 2, 0, tzinfo=UTC)


def opened(sev="P2", **kw):
    return incident.new_incident(
        at=T0,
        env="production",
        severity_name=sev,
        title="API 500s after v1.5.0",
        who="ana@laptop",
        **kw,
    )


def test_a_new_incident_has_the_seed_fields():
    record = opened(kind="rollback", from_version="v1.5.0", to_version="v1.4.2")
    assert record["id"] == "INC-20261128100200"
    assert (record["type"], record["from_version"], record["to_version"]) == (
        "rollback",
        "v1.5.0",
        "v1.4.2",
    )
    assert (record["started_at"], record["triggered_by"]) == ("2026-11-28T10:02:00Z", "ana@laptop")
    assert record["status"] == "in_progress" and record["severity"] == "P2"
    assert record["timeline"][0]["event"].startswith("rollback opened by ana@laptop")
    json.dumps(record)  # valid JSON


def test_severity_table_is_the_seeds():
    p1, p4 = incident.SEVERITIES["P1"], incident.SEVERITIES["P4"]
    assert (p1.response_minutes, p1.update_minutes, p1.post_mortem_hours) == (5, 15, 24)
    assert (p4.response_minutes, p4.update_minutes, p4.post_mortem) == (240, None, "Not required")
    with pytest.raises(BadInput, match="unknown severity 'P5'; choose one of: P1, P2, P3, P4"):
        incident.severity("P5")


def test_updates_extend_the_timeline_and_resolution_closes():
    record = incident.update(
        opened(), T0 + timedelta(minutes=10), "identified", "bad index in 0305", "ana"
    )
    record = incident.update(record, T0 + timedelta(minutes=95), "resolved", "rolled back", "ana")
    assert [e["event"].split(" (")[0] for e in record["timeline"]] == [
        "incident opened by ana@laptop: API 500s after v1.5.0",
        "status identified",
        "status resolved",
    ]
    assert record["completed_at"] == "2026-11-28T11:37:00Z"
    assert incident.duration(record) == "1 hours 35 minutes"
    with pytest.raises(BadInput, match="already closed"):
        incident.update(record, T0, "monitoring", "x", "ana")
    with pytest.raises(BadInput, match="unknown status 'done'"):
        incident.update(opened(), T0, "done", "x", "ana")


def test_overdue_status_updates_follow_the_cadence():
    record = opened("P1")
    assert incident.overdue(record, T0 + timedelta(minutes=14)) is None
    assert incident.overdue(record, T0 + timedelta(minutes=20)) == (
        "status update overdue by 5 min (every 15 min for P1)"
    )
    assert incident.overdue(opened("P4"), T0 + timedelta(days=3)) is None


def test_status_update_follows_template_13_2():
    text = incident.status_update_text(opened(summary="checkout fails"))
    assert text.splitlines()[:3] == [
        "**Incident:** INC-20261128100200",
        "**Severity:** P2",
        "**Status:** Investigating",
    ]
    assert "- Start time: 2026-11-28 10:02:00 UTC" in text
    assert text.endswith("**Next Update:**\nIn 30 minutes.")


def test_report_follows_template_15_2_with_the_real_timeline():
    record = incident.update(
        opened(), T0 + timedelta(minutes=30), "resolved", "rolled back to v1.4.2", "ana"
    )
    report = incident.report_markdown(record)
    assert report.startswith("# Incident Report: API 500s after v1.5.0\n\n## Summary")
    assert "| Incident ID | INC-20261128100200 |" in report
    assert "| Duration | 0 hours 30 minutes |" in report
    assert "| 10:02 | incident opened by ana@laptop: API 500s after v1.5.0 |" in report
    assert "| 10:32 | status resolved (ana): rolled back to v1.4.2 |" in report
    assert "## Resolution\nrolled back to v1.4.2" in report


@pytest.mark.parametrize("bad", ["INC-1", "inc-20261128100200", "INC-2026112810020x", "../x"])
def test_incident_ids_are_validated(bad):
    with pytest.raises(BadInput, match="invalid incident id"):
        incident.validate_id(bad)


@pytest.mark.parametrize(
    "bad", ["INC-20261202061500\n", "INC-２0261202061500", "INC-2026", "inc-20261202061500"]
)
def test_incident_ids_are_exactly_inc_and_14_ascii_digits(bad):
    assert incident.validate_id("INC-20261202061500") == "INC-20261202061500"
    with pytest.raises(BadInput, match="expected INC-YYYYmmddHHMMSS"):
        incident.validate_id(bad)
