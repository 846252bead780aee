# ruff: noqa: F811 - the fixtures app and gh come from test_release_tasks
"""`invoke hotfix.*` without the testbed: a real origin + checkout, the GitHub and Slack
stand-ins. finish's deploy, post-mortem and SLA report: tests/e2e/test_releases_live.py."""

from __future__ import annotations

import json

import pytest

from testbed.sample_app import git, refs
from tests.integration.test_release_tasks import app, gh  # noqa: F401 - fixtures
from tests.support.cli import invoke
from tests.support.fakehost import fake_sessions

pytest_plugins = ["pg_fixtures"]
pytestmark = pytest.mark.integration
START = (
    "hotfix.start",
    "CERN-123",
    "--category",
    "security",
    "--description",
    "Login bypass",
    "--now",
    "2026-12-02T10:00:00Z",
)


def test_start_branches_from_main_records_the_sla_opens_the_pr_and_notifies(app, gh, slack):
    origin, root, _ = app
    r = invoke(*START)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == (
        "== hotfix started: CERN-123 v1.0.1 (CRITICAL); security: 0h00m since start; "
        "2h00m left to fix, 4h00m left to deploy"
    )
    branch = "origin/hotfix/CERN-123-login-bypass"
    assert (
        git(root, "merge-base", branch, "origin/main").strip()
        == git(root, "rev-parse", "origin/main").strip()
    )
    assert git(root, "rev-list", "--count", f"origin/main..{branch}").strip() == "1"
    record = json.loads(git(root, "show", f"{branch}:.cerniq/hotfixes/CERN-123.json"))
    assert (record["category"], record["priority"], record["started_at"], record["version"]) == (
        "security",
        "CRITICAL",
        "2026-12-02T10:00:00Z",
        "1.0.1",
    )
    assert json.loads(git(root, "show", f"{branch}:package.json"))["version"] == "1.0.1"
    pr = gh.pull_json(1)
    assert (pr["head"]["ref"], pr["base"]["ref"]) == ("hotfix/CERN-123-login-bypass", "main")
    assert [u["login"] for u in pr["requested_reviewers"]] == ["ana-cerniq", "bogdan-cerniq"]
    assert slack.texts() == [":x: Hotfix CERN-123 started (CRITICAL)"]
    before = refs(origin)
    again = invoke(*START)
    assert again.returncode == 0 and "already on origin: continuing it" in again.stdout
    assert refs(origin) == before and sorted(gh.pulls) == [1]


def test_status_shows_the_checklist_and_the_sla_left(app, gh, slack):
    origin, root, _ = app
    assert invoke(*START).returncode == 0
    r = invoke("hotfix.status", "--now", "2026-12-02T13:15:00Z", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sla"]["line"] == (
        "security: 3h15m since start; -1h15m left to fix, 0h45m left to deploy"
    )
    items = {i["key"]: i for i in out["items"]}
    assert items["from-main"]["state"] == "ok"
    assert items["pr"]["evidence"] == "PR #1"
    assert items["reviewers"]["evidence"] == "2 of 2"
    assert items["test"]["state"] == "missing"
    assert items["approvals"]["evidence"] == "0 of 2 approval(s) on PR #1"


def test_finish_refuses_without_ci_and_two_approvals_for_security(app, gh, slack):
    origin, root, _ = app
    assert invoke(*START).returncode == 0
    gh.add_review(1, "ana-cerniq", "APPROVED", "2026-12-02T10:30:00Z")
    gh.set_check("hotfix/CERN-123-login-bypass", "success")
    before = refs(origin)
    r = invoke("hotfix.finish", "--confirm", "DEPLOY PRODUCTION")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: hotfix CERN-123 is not ready, nothing was changed: Minimum approvals "
        "(1 of 2 approval(s) on PR #1 (ana-cerniq)); see `invoke hotfix.status`"
    ]
    assert refs(origin) == before
    gh.add_review(1, "bogdan-cerniq", "APPROVED", "2026-12-02T10:45:00Z")
    dry = invoke("hotfix.finish", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    report = json.loads(dry.stdout)
    assert [s["name"] for s in report["steps"]][-3:] == [
        "open_post_mortem",
        "report_sla",
        "close_release_branch",
    ]
    actions = report["facts"]["actions"]
    assert "git tag -a v1.0.1 -m 'Hotfix: Login bypass' <merge commit on main>" in actions
    assert "incident: post-mortem of CERN-123 due in 24 h" in actions
    assert refs(origin) == before and gh.releases == []


def test_hotfix_bad_input_is_one_line_and_nothing_connects(app, gh):
    origin, _, _ = app
    r = invoke("hotfix.start", "CERN-12;rm", "--category", "security", "--description", "x")
    assert (r.returncode, r.stderr.strip()) == (
        2,
        "error: invalid ticket 'CERN-12;rm': expected CERN-<number>, e.g. CERN-123",
    )
    r = invoke("hotfix.start", "CERN-1", "--category", "urgent", "--description", "x")
    assert r.returncode == 2 and r.stderr.startswith("error: invalid --category 'urgent'")
    assert gh.requests == [] and git(origin, "branch", "--list", "hotfix/*") == ""


def test_finish_tags_the_patch_deploys_opens_the_post_mortem_and_reports_the_sla(
    app, gh, slack, monkeypatch
):
    """In process, hosts faked (the post-mortem record lands on the fake primary); deploy
    stands in (tests/e2e/test_releases_live.py runs it for real)."""
    from datetime import UTC, datetime

    from cerniq_ops import deploy, hotfix, steps
    from cerniq_ops.procedure import run
    from tasks.release import _context

    origin, root, _ = app
    assert invoke(*START).returncode == 0
    branch = "hotfix/CERN-123-login-bypass"
    git(root, "checkout", "-q", branch)
    (root / "test/unit/login.test.js").write_text("// reproduces CERN-123\n")
    (root / "packages/api/src/auth.js").write_text("// fixed\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fix(auth): CERN-123 login bypass")
    git(root, "push", "-q", "origin", branch)
    git(root, "checkout", "-q", "develop")
    gh.set_check(branch, "success")
    gh.add_review(1, "ana-cerniq", "APPROVED", "2026-12-02T10:30:00Z")
    gh.add_review(1, "bogdan-cerniq", "APPROVED", "2026-12-02T10:40:00Z")
    state = fake_sessions(monkeypatch)
    monkeypatch.setattr(
        steps,
        "registry_for",
        lambda s: type("R", (), {"has_manifest": lambda self, repo, tag: True})(),
    )
    deploys = []

    class Done:
        facts = {"backup": "20261202-110000"}

        def to_dict(self):
            return {"ok": True}

    monkeypatch.setattr(deploy, "deploy", lambda ctx: deploys.append(ctx.version) or Done())
    ctx = _context("hotfix.finish", None, False, confirm="DEPLOY PRODUCTION", image_wait=5)
    ctx.options["now"] = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
    report = run(hotfix.FINISH, ctx)
    assert report.ok and deploys == ["v1.0.1"]
    assert git(origin, "cat-file", "-t", "v1.0.1").strip() == "tag"
    assert git(origin, "tag", "-l", "--format=%(contents:subject)", "v1.0.1").strip() == (
        "Hotfix: Login bypass"
    )
    assert git(origin, "merge-base", "--is-ancestor", "v1.0.1", "develop") == ""
    assert json.loads(git(origin, "show", "develop:package.json"))["version"] == "1.0.1"
    assert ctx.facts["sla"]["report"] == (
        "time to production 2h30m against the security SLA of 4h00m: met (1h30m to spare)"
    )
    doc = ctx.facts["post_mortem"]
    assert (doc["type"], doc["post_mortem_due"]) == ("post-mortem", "2026-12-03T12:30:00Z")
    uploaded = {p: v for p, v in state.hosts["prod-app1"].files.items() if "/incidents/" in p}
    [saved] = [json.loads(v) for v in uploaded.values()]
    assert saved["id"] == doc["id"] and saved["hotfix"] == {
        "ticket": "CERN-123",
        "version": "1.0.1",
    }
    assert [r["tag_name"] for r in gh.releases] == ["v1.0.1"]
    assert git(origin, "branch", "--list", "hotfix/*") == ""
    assert "met (1h30m to spare)" in slack.posts[-1]["blocks"][-1]["text"]["text"]
