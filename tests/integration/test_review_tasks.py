"""`invoke review.*` as a user runs it, against a real sample app repo and the GitHub/Slack
stand-ins (GitHub's and Slack's real formats). The clock is an argument (--now): no sleeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from testbed.sample_app import commit, git, make_released_app, make_sample_app, write
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


# -- the feature checklist (seed 3.3) ------------------------------------------------------------
FILLED = """## Description
Caches lead scores for an hour (CERN-42).

## Type of Change
- [ ] Bug fix
- [x] New feature
- [ ] Breaking change
- [ ] Documentation

## Testing
- [x] Unit tests
- [ ] Integration tests
- [ ] Manual testing

## Checklist
- [x] Code follows standards
- [x] Tests pass
- [x] Documentation updated
- [x] Changelog updated
"""


@pytest.fixture
def feature_repo(tmp_path, monkeypatch, team_file):
    """The app after its first release, a feature branch pushed, the GitHub stand-in reading
    that origin, CERNIQ_APP_REPO the checkout."""
    origin, root = make_released_app(tmp_path)
    monkeypatch.setenv("CERNIQ_APP_REPO", str(root))
    server = GitHubPulls(origin=origin)
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_API", server.url)
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_REPO", server.repo)
    monkeypatch.setenv("GITHUB_TOKEN", server.token)
    yield origin, root, server
    server.close()


def push_branch(root, branch: str, commits: list[tuple[dict, str]], start="origin/develop"):
    git(root, "checkout", "-q", "-b", branch, start)
    for files, message in commits:
        write(root, files)
        commit(root, message)
    git(root, "push", "-q", "origin", branch)
    git(root, "checkout", "-q", "develop")


def test_a_complete_feature_pr_passes_every_item(feature_repo):
    origin, root, gh = feature_repo
    branch = "feature/CERN-42-score-cache"
    push_branch(
        root,
        branch,
        [
            ({"packages/api/src/cache.js": "// cache\n"}, "feat(api): lead score cache"),
            ({"test/unit/cache.test.js": "// test\n"}, "test(api): cache expiry"),
            ({"CHANGELOG.md": "# Changelog\n\n## Unreleased\n- Score cache.\n"}, "docs: changelog"),
        ],
    )
    gh.add_pull(
        42,
        "elena-cerniq",
        [],
        "2026-12-01T08:00:00Z",
        title="feat(api): lead score cache",
        requested=["ana-cerniq", "dan-cerniq"],
        head_ref=branch,
        body=FILLED,
        labels=["feature"],
    )
    gh.set_check(branch, "success")
    r = invoke("review.feature", "42", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    items = {i["label"]: (i["ok"], i["evidence"]) for i in json.loads(r.stdout)["items"]}
    assert all(ok for ok, _ in items.values()), items
    assert items["Commits with meaningful messages"] == (True, "3 commit(s), all conventional")
    assert items["Linked to ticket"] == (True, "CERN-42")
    assert items["Tests updated for behaviour changes"] == (True, "1 test file(s) changed")
    shown = invoke("review.feature", "42")
    assert shown.returncode == 0 and shown.stdout.strip().endswith("feature checklist complete")


def test_an_incomplete_feature_pr_names_each_missing_item_and_exits_1(feature_repo):
    origin, root, gh = feature_repo
    branch = "feature/score-cache"
    push_branch(
        root,
        branch,
        [({"packages/api/src/services/cache.js": "// cache\n"}, "wip")],
    )
    # develop moves on after the branch was cut
    write(root, {"docs/later.md": "# later\n"})
    commit(root, "docs: later")
    git(root, "push", "-q", "origin", "develop")
    gh.add_pull(
        43,
        "elena-cerniq",
        [],
        "2026-12-01T08:00:00Z",
        title="stuff",
        requested=["dan-cerniq"],
        head_ref=branch,
        body="## Description\nBrief description of changes.\n",
    )
    gh.set_check(branch, "failure")
    r = invoke("review.feature", "43", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    items = {i["label"]: (i["ok"], i["evidence"]) for i in json.loads(r.stdout)["items"]}
    assert items["Branch from the latest develop"] == (
        False,
        "1 commit(s) of origin/develop missing: merge or rebase origin/develop",
    )
    assert items["Commits with meaningful messages"] == (False, "not conventional: 'wip'")
    assert items["Tests updated for behaviour changes"] == (False, "1 source file(s), no test")
    assert items["All tests pass (CI)"][0] is False
    assert items["Documentation and changelog updated"] == (
        False,
        "user-facing change (packages/api/src/services/cache.js) needs an entry in CHANGELOG.md",
    )
    assert items["Title follows convention"] == (False, "'stuff' is not `type: summary`")
    assert items["Description is complete"] == (
        False,
        "no '## Type of Change' section; no '## Testing' section; no '## Checklist' section; "
        "the Description is the template's placeholder",
    )
    assert items["Linked to ticket"] == (
        False,
        "no CERN-<number> in the title, branch or description",
    )
    assert items["Appropriate reviewers requested"] == (
        False,
        "1 asked (dan-cerniq); the rules want 2 and @tech-lead",
    )
    assert items["Relevant labels added"] == (False, "no labels")
    shown = invoke("review.feature", "43")
    assert items["Self-review, lint, tests, docs (the author's checklist)"] == (
        False,
        "no Checklist in the description",
    )
    assert shown.returncode == 1 and "11 item(s) missing" in shown.stdout
    assert "MISSING" in shown.stdout


def test_a_bad_pr_number_is_one_line_exit_2(feature_repo):
    r = invoke("review.feature", "abc")
    assert r.returncode == 2 and r.stderr.startswith("error: invalid PR 'abc'")
