"""`invoke review.*` as a user runs it, against a real sample app repo and the GitHub/Slack
stand-ins (GitHub's and Slack's real formats). The clock is an argument (--now): no sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.sample_app import git, make_sample_app
from tests.support.cli import invoke
from tests.support.github_prs import GitHubPulls
from tests.support.outside import SlackWebhook

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def team_file(tmp_path, monkeypatch):
    data = yaml.safe_load((PROJECT / "team.yml").read_text())
    data["review"]["nudge_state"] = str(tmp_path / "nudges.json")
    path = tmp_path / "team.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CERNIQ_TEAM_FILE", str(path))
    return path


@pytest.fixture
def gh(monkeypatch):
    server = GitHubPulls()
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_API", server.url)
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_REPO", server.repo)
    monkeypatch.setenv("GITHUB_TOKEN", server.token)
    yield server
    server.close()


@pytest.fixture
def alerts(monkeypatch):
    server = SlackWebhook()
    monkeypatch.setenv("CERNIQ_SLACK_WEBHOOK_ALERTS", server.webhook)
    yield server
    server.close()


def test_codeowners_writes_the_files_once_and_a_rerun_changes_nothing(tmp_path, team_file):
    app = make_sample_app(tmp_path)
    first = invoke("review.codeowners", "--repo", str(app))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "wrote .github/CODEOWNERS",
        "wrote .github/pull_request_template.md",
    ]
    codeowners = (app / ".github/CODEOWNERS").read_text()
    assert "**/migrations/** @carmen-cerniq\n" in codeowners
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "chore: code owners")
    again = invoke("review.codeowners", "--repo", str(app))
    assert again.returncode == 0
    assert again.stdout.splitlines() == [
        "unchanged .github/CODEOWNERS",
        "unchanged .github/pull_request_template.md",
    ]
    assert git(app, "status", "--porcelain") == ""


def test_a_pr_touching_migrations_without_the_dba_fails_and_sets_a_failing_status(
    team_file, gh, slack
):
    gh.add_pull(
        12,
        "elena-cerniq",
        [f"packages/api/src/f{i}.js" for i in range(120)]  # two pages of files
        + ["packages/api/migrations/003_leads.sql"],
        "2026-11-30T08:00:00Z",
    )
    gh.add_review(12, "ana-cerniq", "APPROVED", "2026-11-30T09:00:00Z")
    gh.add_review(12, "dan-cerniq", "APPROVED", "2026-11-30T09:30:00Z")
    r = invoke("review.check", "12", "--status")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "PR #12: review rules not met",
        "  missing: packages/api/migrations/003_leads.sql needs an approval from @dba"
        " (carmen-cerniq)",
    ]
    assert any("/pulls/12/files?per_page=100&page=2" in line for line in gh.requests)
    assert [(s["sha"], s["state"], s["context"]) for s in gh.statuses] == [
        (gh.head_sha(12), "failure", "cerniq/review-rules")
    ]
    gh.add_review(12, "carmen-cerniq", "APPROVED", "2026-11-30T10:00:00Z")
    ok = invoke("review.check", "12", "--status")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "PR #12: review rules met: 3 approval(s)"
    assert gh.statuses[-1]["state"] == "success"
    assert slack.posts == []


def test_a_pr_waiting_5_hours_gets_one_reminder_and_no_second(team_file, gh, slack, alerts):
    # Thu 26 Nov 2026 09:00 Bucharest (07:00 UTC); 5 business hours later is 14:00 local
    gh.add_pull(
        7,
        "dan-cerniq",
        ["packages/web/src/app.js"],
        "2026-11-26T07:00:00Z",
        title="Lead list paging",
        requested=["ana-cerniq"],
    )
    gh.add_pull(8, "dan-cerniq", ["packages/web/src/b.js"], "2026-11-26T10:30:00Z")
    first = invoke("review.nudge", "--now", "2026-11-26T12:00:00Z")
    assert first.returncode == 0, first.stderr
    assert len(alerts.posts) == 1 and slack.posts == []  # routed to #alerts
    body = alerts.posts[0]["blocks"][-1]["text"]["text"]
    assert body.startswith('PR #7 "Lead list paging" waits 5 business h for a first review;')
    assert "Reminder in Slack: @ana" in body
    again = invoke("review.nudge", "--now", "2026-11-26T12:30:00Z")
    assert again.returncode == 0, again.stderr
    assert len(alerts.posts) == 1
    assert again.stdout.strip().endswith(
        "0 nudge(s) due at 2026-11-26T12:30:00+00:00; 2 open PR(s) checked"
    )


def test_a_push_after_requested_changes_gets_one_follow_up_reminder_per_push(
    team_file, gh, slack, alerts
):
    gh.add_pull(9, "dan-cerniq", ["packages/web/src/app.js"], "2026-11-26T07:00:00Z")
    gh.add_review(9, "ana-cerniq", "CHANGES_REQUESTED", "2026-11-26T08:00:00Z")
    gh.push(9, "2026-11-26T09:00:00Z")  # 11:00 local
    first = invoke("review.nudge", "--now", "2026-11-26T12:00:00Z")  # 3 business hours later
    assert first.returncode == 0, first.stderr
    assert len(alerts.posts) == 1
    body = alerts.posts[0]["blocks"][-1]["text"]["text"]
    assert "waits 3 business h for a follow-up review; target 2 hours." in body
    assert "Follow-up reminder in Slack: @ana" in body
    invoke("review.nudge", "--now", "2026-11-26T12:30:00Z")
    assert len(alerts.posts) == 1
    gh.push(9, "2026-11-26T12:40:00Z")  # a new push: its own levels
    invoke("review.nudge", "--now", "2026-11-26T15:00:00Z")
    assert len(alerts.posts) == 2


def test_without_the_channel_webhook_the_nudge_falls_back_to_the_default(team_file, gh, slack):
    gh.add_pull(7, "dan-cerniq", ["packages/web/src/app.js"], "2026-11-26T07:00:00Z")
    r = invoke(
        "review.nudge", "--now", "2026-11-26T12:00:00Z", drop=("CERNIQ_SLACK_WEBHOOK_ALERTS",)
    )
    assert r.returncode == 0, r.stderr
    assert len(slack.posts) == 1
    assert "(#alerts via the default webhook)" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (("review.check", "twelve"), "error: invalid PR 'twelve': expected its number, e.g. 42"),
        (
            ("review.nudge", "--now", "yesterday"),
            "error: cannot read the time 'yesterday'; use ISO 8601, e.g. 2026-03-30T09:00",
        ),
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_nothing_posted(team_file, gh, slack, args, message):
    r = invoke(*args)
    assert r.returncode == 2
    assert r.stderr.strip() == message
    assert slack.posts == [] and gh.requests == []


def test_codeowners_refuses_a_folder_that_is_not_a_repo(tmp_path, team_file):
    r = invoke("review.codeowners", "--repo", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: {tmp_path} is not a git repository; pass --repo PATH to the app's checkout"
    )
