"""`invoke oncall.*` as a user runs it: the rotation from a team file, overrides written to its
overrides file, and a handoff from a folder of real incident records posted to the Slack
stand-in (#incidents). The clock is an argument: no sleeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cerniq_ops import incident
from tests.support.cli import invoke
from tests.support.outside import SlackWebhook

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def team_file(tmp_path, monkeypatch):
    data = yaml.safe_load((PROJECT / "team.yml").read_text())
    data["oncall"]["overrides_file"] = str(tmp_path / "overrides.yml")
    path = tmp_path / "team.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CERNIQ_TEAM_FILE", str(path))
    return path


@pytest.fixture
def incidents_channel(monkeypatch):
    server = SlackWebhook()
    monkeypatch.setenv("CERNIQ_SLACK_WEBHOOK_INCIDENTS", server.webhook)
    yield server
    server.close()


def test_who_across_the_dst_handoff(team_file):
    # Monday 30 March 2026, the day after Bucharest moved to EEST: 09:00 local is 06:00 UTC
    before = invoke("oncall.who", "--at", "2026-03-30T05:30:00Z")
    after = invoke("oncall.who", "--at", "2026-03-30T09:00")  # local time
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    assert before.stdout.splitlines() == [
        "primary: bogdan  secondary: carmen",
        "shift: Mon 2026-03-23 09:00 EET -> Mon 2026-03-30 09:00 EEST",
    ]
    assert after.stdout.splitlines()[0] == "primary: carmen  secondary: dan"


def test_an_override_changes_who_and_recording_it_twice_changes_nothing(team_file, tmp_path):
    args = (
        "oncall.override",
        "--who",
        "elena",
        "--from",
        "2026-03-25T09:00",
        "--to",
        "2026-03-26T09:00",
        "--reason",
        "bogdan sick",
    )
    first = invoke(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        "recorded: elena covers primary Wed 2026-03-25 09:00 EET -> Thu 2026-03-26 09:00 EET"
    )
    saved = (tmp_path / "overrides.yml").read_text()
    again = invoke(*args)
    assert again.stdout.startswith("unchanged: elena covers primary")
    assert (tmp_path / "overrides.yml").read_text() == saved
    who = invoke("oncall.who", "--at", "2026-03-25T12:00", "--json")
    assert json.loads(who.stdout)["primary"] == "elena"
    sched = invoke("oncall.schedule", "--weeks", "2", "--at", "2026-03-23T10:00")
    assert "elena covers primary Wed 2026-03-25 09:00 EET" in sched.stdout


def test_a_handoff_with_two_open_incidents_lists_both_and_posts_to_incidents(
    team_file, tmp_path, slack, incidents_channel
):
    folder = tmp_path / "primary"
    (folder / "incidents").mkdir(parents=True)
    opened = [
        incident.new_incident(
            at=datetime(2026, 3, 30, 4, 0, tzinfo=UTC),
            env="production",
            severity_name="P1",
            title="API down",
            who="bogdan",
        ),
        incident.new_incident(
            at=datetime(2026, 3, 29, 18, 0, tzinfo=UTC),
            env="production",
            severity_name="P2",
            title="Exports slow",
            who="bogdan",
        ),
    ]
    for r in opened:
        (folder / "incidents" / f"{r['id']}.json").write_text(json.dumps(r))
    r = invoke("oncall.handoff", "--source", str(folder), "--now", "2026-03-30T09:00")
    assert r.returncode == 0, r.stderr
    assert "- [ ] Review open incidents: 2 open" in r.stdout
    assert f"    - {opened[0]['id']} P1 investigating, open 2 h 0 min: API down" in r.stdout
    assert f"    - {opened[1]['id']} P2 investigating, open 12 h 0 min: Exports slow" in r.stdout
    assert slack.posts == [] and len(incidents_channel.posts) == 1
    body = incidents_channel.posts[0]["blocks"][-1]["text"]["text"]
    assert "API down" in body and "Exports slow" in body
    assert r.stdout.strip().endswith("(sent to Slack (#incidents))")


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("oncall.who", "--at", "soon"),
            "error: cannot read the time 'soon'; use ISO 8601, e.g. 2026-03-30T09:00",
        ),
        (("oncall.schedule", "--weeks", "0"), "error: --weeks must be 1 or more"),
        (
            (
                "oncall.override",
                "--who",
                "zoe",
                "--from",
                "2026-03-25T09:00",
                "--to",
                "2026-03-26T09:00",
            ),
            "error: unknown person 'zoe'; team.yml people: ana, bogdan, carmen, dan, elena",
        ),
        (
            ("oncall.handoff", "--env", "prod", "--source", "."),
            "error: unknown environment 'prod'; choose one of: staging, production",
        ),
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_nothing_posted(team_file, slack, args, message):
    r = invoke(*args)
    assert (r.returncode, r.stderr.strip()) == (2, message)
    assert slack.posts == []


def test_an_unacknowledged_p1_pages_the_secondary_once_through_pagerduty(
    tmp_path, monkeypatch, slack, incidents_channel
):
    from tests.support.pagerduty import PagerDutyEvents

    pd = PagerDutyEvents()
    data = yaml.safe_load((PROJECT / "team.yml").read_text())
    data["oncall"]["pagerduty_events_url"] = pd.enqueue_url
    data["oncall"]["overrides_file"] = str(tmp_path / "overrides.yml")
    (tmp_path / "team.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CERNIQ_TEAM_FILE", str(tmp_path / "team.yml"))
    monkeypatch.setenv("CERNIQ_PAGERDUTY_ROUTING_KEY", "R0UT1NGKEY0123")
    folder = tmp_path / "primary"
    (folder / "incidents").mkdir(parents=True)
    record = incident.new_incident(
        at=datetime(2026, 3, 30, 10, 0, tzinfo=UTC),
        env="production",
        severity_name="P1",
        title="API down",
        who="carmen",
        oncall={"primary": "carmen", "secondary": "dan"},
    )
    path = folder / "incidents" / f"{record['id']}.json"
    path.write_text(json.dumps(record))
    try:
        early = invoke("oncall.escalate", "--source", str(folder), "--now", "2026-03-30T10:04:00Z")
        assert early.returncode == 0, early.stderr
        assert pd.events == [] and early.stdout.strip().endswith(
            "0 page(s) at 2026-03-30T10:04:00+00:00"
        )
        r = invoke("oncall.escalate", "--source", str(folder), "--now", "2026-03-30T10:06:00Z")
        assert r.returncode == 0, r.stderr
        assert len(pd.events) == 1
        assert pd.events[0]["payload"]["custom_details"]["secondary"] == "dan"
        assert "R0UT1NGKEY0123" not in r.stdout + r.stderr
        assert (
            len(incidents_channel.posts) == 1
            and "@dan" in incidents_channel.posts[0]["blocks"][-1]["text"]["text"]
        )
        saved = json.loads(path.read_text())
        assert [p["who"] for p in saved["pages"]] == ["dan"]
        again = invoke("oncall.escalate", "--source", str(folder), "--now", "2026-03-30T10:20:00Z")
        assert again.returncode == 0 and len(pd.events) == 1 and len(incidents_channel.posts) == 1
    finally:
        pd.close()
