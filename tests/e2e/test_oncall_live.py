"""On-call against the testbed's real hosts: incidents opened with `incident.open` name the
primary; `oncall.handoff` reads them (and the lock, audit log and backups) from the hosts;
`oncall.escalate` pages the secondary once and records it in the incident on the host."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from cerniq_ops import incident
from tests.support.cli import invoke
from tests.support.pagerduty import PagerDutyEvents

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pagerduty(tmp_path, monkeypatch):
    pd = PagerDutyEvents()
    data = yaml.safe_load((PROJECT / "team.yml").read_text())
    data["oncall"]["pagerduty_events_url"] = pd.enqueue_url
    data["oncall"]["overrides_file"] = str(tmp_path / "overrides.yml")
    (tmp_path / "team.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CERNIQ_TEAM_FILE", str(tmp_path / "team.yml"))
    monkeypatch.setenv("CERNIQ_PAGERDUTY_ROUTING_KEY", "R0UT1NGKEY0123")
    yield pd
    pd.close()


def test_handoff_and_paging_from_the_hosts(testbed, slack, pagerduty):
    opened = []
    for severity, title in (("P1", "checkout down"), ("P3", "slow exports")):
        r = invoke(
            "incident.open", "--env", "staging", "--severity", severity, "--title", title, "--json"
        )
        assert r.returncode == 0, r.stdout + r.stderr
        opened.append(json.loads(r.stdout)["facts"]["incident"])
    who = json.loads(invoke("oncall.who", "--json").stdout)
    assert opened[0]["oncall"] == {"primary": who["primary"], "secondary": who["secondary"]}

    handoff = invoke("oncall.handoff", "--env", "staging", "--dry-run")
    assert handoff.returncode == 0, handoff.stdout + handoff.stderr
    assert "- [ ] Review open incidents: 2 open" in handoff.stdout
    for record in opened:
        assert f"    - {record['id']} {record['severity']} investigating, open " in handoff.stdout

    later = incident.parse_time(opened[0]["started_at"]) + timedelta(minutes=6)
    stamp = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    paged = invoke("oncall.escalate", "--env", "staging", "--now", stamp)
    assert paged.returncode == 0, paged.stdout + paged.stderr
    assert [e["dedup_key"] for e in pagerduty.events] == [f"{opened[0]['id']}-secondary"]
    records = {
        r["id"]: r for r in json.loads(invoke("incident.list", "--env", "staging", "--json").stdout)
    }
    assert [p["who"] for p in records[opened[0]["id"]]["pages"]] == [who["secondary"]]
    assert "pages" not in records[opened[1]["id"]]  # P3: never paged
    again = invoke("oncall.escalate", "--env", "staging", "--now", stamp)
    assert again.returncode == 0 and len(pagerduty.events) == 1
