"""Hotfix builders (seed 8.1, 8.2): branch names, SLA clock, gates, the post-mortem record."""

from datetime import UTC, datetime, timedelta

import pytest

from cerniq_ops import hotfix as h
from cerniq_ops.errors import BadInput

pytestmark = pytest.mark.unit
TEAM = {
    "business": {
        "time_zone": "Europe/Bucharest",
        "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
        "start": "08:00",
        "end": "17:30",
        "holidays_country": "RO",
    },
}


def record(category="security", started="2026-12-02T10:00:00Z"):
    return {
        "ticket": "CERN-123",
        "category": category,
        "priority": "CRITICAL",
        "description": "Login bypass",
        "started_at": started,
        "started_by": "ana@ci",
        "version": "1.0.1",
        "branch": "hotfix/CERN-123-login-bypass",
    }


def test_branch_name_is_the_ticket_and_a_slug_of_the_description():
    assert h.branch_name("CERN-123", "Login bypass via /auth?x=1 !") == (
        "hotfix/CERN-123-login-bypass-via-auth-x-1"
    )


@pytest.mark.parametrize("ticket", ["CERN-0", "cern-1", "CERN-12; rm -rf /", "JIRA-1", "CERN-1\n"])
def test_a_bad_ticket_is_refused(ticket):
    with pytest.raises(BadInput, match="expected CERN-<number>"):
        h.validate_ticket(ticket)


def test_bad_category_and_empty_description_are_refused():
    with pytest.raises(
        BadInput,
        match="invalid --category 'urgent'; choose one of: security, "
        "data_loss, service_outage, major_functionality",
    ):
        h.category("urgent")
    with pytest.raises(BadInput, match="needs a --description"):
        h.branch_name("CERN-1", " !! ")


def test_security_sla_is_2h_to_fix_and_4h_to_deploy():
    now = datetime(2026, 12, 2, 11, 30, tzinfo=UTC)
    c = h.clock(record(), now, TEAM)
    assert c.line() == "security: 1h30m since start; 0h30m left to fix, 2h30m left to deploy"
    assert c.report() == (
        "time to production 1h30m against the security SLA of 4h00m: met (2h30m to spare)"
    )
    late = h.clock(record(), now + timedelta(hours=3), TEAM)
    assert late.line() == "security: 4h30m since start; SLA BREACHED: deploy was due 0h30m ago"
    assert late.report().endswith("MISSED by 0h30m")


def test_service_outage_is_4h_and_8h():
    c = h.clock(record("service_outage"), datetime(2026, 12, 2, 10, 0, tzinfo=UTC), TEAM)
    assert (c.fix_left, c.deploy_left) == (timedelta(hours=4), timedelta(hours=8))


def test_major_functionality_counts_one_business_day():
    # started Friday 16:30 Bucharest (14:30 UTC); Monday 09:00 local: 1h + 1h of business time
    started = "2026-12-04T14:30:00Z"
    c = h.clock(
        record("major_functionality", started), datetime(2026, 12, 7, 7, 0, tzinfo=UTC), TEAM
    )
    assert c.business and c.elapsed == timedelta(hours=2)
    assert c.deploy_left == timedelta(hours=7, minutes=30)


def test_security_needs_two_approvals_others_one():
    pr = {"number": 4}
    one = {"ana-cerniq": "APPROVED"}
    sec = {i.key: i for i in h.gates(record(), ("success", "ok"), one, pr)}
    assert (sec["approvals"].state, sec["approvals"].evidence) == (
        "missing",
        "1 of 2 approval(s) on PR #4 (ana-cerniq)",
    )
    outage = {i.key: i for i in h.gates(record("service_outage"), ("success", "ok"), one, pr)}
    assert outage["approvals"].state == "ok" and outage["ci"].state == "ok"
    failing = {i.key: i for i in h.gates(record(), ("failure", "failed: CI"), {}, None)}
    assert failing["ci"].state == "missing"
    assert failing["approvals"].evidence == "0 of 2 approval(s) on no PR to main"


def test_post_mortem_is_an_incident_due_within_24_hours():
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    doc = h.post_mortem(record(), at, "production", "ana@ci", "time to production 2h00m ...")
    assert doc["type"] == "post-mortem" and doc["severity"] == "P1"
    assert doc["post_mortem_due"] == "2026-12-03T12:00:00Z"
    assert doc["title"] == "Post-mortem: CERN-123 Login bypass"
    assert doc["hotfix"] == {"ticket": "CERN-123", "version": "1.0.1"}
