"""`invoke release.*` as a user runs it, without the testbed: a real bare `origin` and checkout
(testbed/sample_app.py), the GitHub stand-in over HTTP (it reads branch heads from that
origin, as GitHub would), staging's migration status from a local PostgreSQL database.
finish's deploy, image wait and announcement are covered by tests/e2e/test_releases_live.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pg_fixtures import ADMIN, REPO_MIGRATIONS

from cerniq_ops import release
from migrations_runner import migrate
from testbed.sample_app import git, make_released_app, refs
from tests.support.cli import invoke
from tests.support.fakehost import fake_sessions
from tests.support.github_prs import GitHubPulls
from tests.support.release_ready import make_ready

pytest_plugins = ["pg_fixtures"]
pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]
DB_SECRET = "not-printed-s3cret"


@pytest.fixture
def app(tmp_path, make_db, monkeypatch):
    """origin + checkout; team.yml pointing at the checkout; staging's db a local database
    with every migration applied (the "migrations tested" item holds)."""
    origin, root = make_released_app(tmp_path)
    data = yaml.safe_load((PROJECT / "team.yml").read_text())
    data["app_repo"] = str(root)
    (tmp_path / "team.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CERNIQ_TEAM_FILE", str(tmp_path / "team.yml"))
    db = make_db()
    tb = tmp_path / "tb"
    for env in ("staging", "production"):
        (tb / "inventories").mkdir(parents=True, exist_ok=True)
        (tb / "group_data").mkdir(parents=True, exist_ok=True)
        host = (ADMIN["host"], {"db_primary": True, "db_port": ADMIN["port"]})
        apps = "app_servers = [('prod-app1', {})]\n" if env == "production" else ""
        (tb / "inventories" / f"{env}.py").write_text(f"{apps}db_servers = [{host!r}]\n")
        (tb / "group_data" / f"{env}.py").write_text(
            f"db_name = {db['dbname']!r}\ndb_user = {ADMIN['user']!r}\n"
        )
    migrate(db, REPO_MIGRATIONS, log=lambda line: None)
    monkeypatch.setenv("CERNIQ_TARGET", "testbed")
    monkeypatch.setenv("CERNIQ_TESTBED_DIR", str(tb))
    monkeypatch.setenv("CERNIQ_STAGING_DB_PASSWORD", DB_SECRET)
    return origin, root, db


@pytest.fixture
def gh(app, monkeypatch):
    server = GitHubPulls(origin=app[0])
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_API", server.url)
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_REPO", server.repo)
    monkeypatch.setenv("GITHUB_TOKEN", server.token)
    yield server
    server.close()


def status(*args) -> dict:
    r = invoke("release.status", "--json", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return {i["key"]: i for i in json.loads(r.stdout)["items"]}


def test_start_branches_bumps_writes_the_changelog_pushes_and_opens_the_pr(app, gh):
    origin, root, _ = app
    r = invoke("release.start", "--bump", "minor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == (
        "== release started: v1.1.0 (release/v1.1.0); PR #1 "
        "https://github.com/cerniq/cerniq-app/pull/1"
    )
    branch = "origin/release/v1.1.0"
    assert json.loads(git(root, "show", f"{branch}:package.json"))["version"] == "1.1.0"
    lock = json.loads(git(root, "show", f"{branch}:package-lock.json"))
    assert (lock["version"], lock["packages"][""]["version"]) == ("1.1.0", "1.1.0")
    changelog = git(root, "show", f"{branch}:CHANGELOG.md")
    section = release.section_of(changelog, "1.1.0")

    def short(ref: str) -> str:
        return git(root, "rev-parse", "--short=7", ref).strip()

    assert [line for line in section.splitlines() if line.startswith(("#", "-"))] == [
        "### Breaking changes",
        f"- **api:** /v1 is gone; clients use /v2 ({short('develop')})",
        "### Features",
        f"- **api:** lead scoring (#12) ({short('develop~3')})",
        "### Fixes",
        f"- null emails no longer crash the import (#13) ({short('develop~2')})",
    ]
    assert changelog.index("## 1.1.0") < changelog.index("## 1.0.0")
    assert git(root, "log", "-1", "--format=%s", branch).strip() == "chore(release): v1.1.0"
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() == "develop"
    pr = gh.pull_json(1)
    assert (pr["head"]["ref"], pr["base"]["ref"], pr["title"]) == (
        "release/v1.1.0",
        "main",
        "Release v1.1.0",
    )
    assert [u["login"] for u in pr["requested_reviewers"]] == ["ana-cerniq", "dan-cerniq"]
    assert "lead scoring (#12)" in pr["body"]

    before = refs(origin)
    again = invoke("release.start", "--bump", "minor")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already on origin: continuing it" in again.stdout
    assert "PR #1 already open" in again.stdout
    assert refs(origin) == before and sorted(gh.pulls) == [1]


def test_status_shows_each_item_with_evidence_and_signoff_records_a_named_person(app, gh):
    origin, root, _ = app
    assert invoke("release.start", "--bump", "minor").returncode == 0
    items = status()
    assert items["version"]["state"] == "ok"
    assert items["version"]["evidence"] == (
        "package.json and package-lock.json at 1.1.0 on release/v1.1.0"
    )
    assert items["changelog"]["state"] == "ok" and items["release-notes"]["state"] == "ok"
    assert (
        items["ci"]["state"] == "missing" and "no statuses or check runs" in items["ci"]["evidence"]
    )
    assert items["migrations"]["state"] == "ok", items["migrations"]
    assert items["tech-lead"]["evidence"] == "PR #1: ana-cerniq (no review)"
    assert items["docs"]["state"] == "missing"
    assert items["backup"]["state"] == "later"
    assert "product-owner" not in items  # a minor release

    r = invoke("release.signoff", "docs", "--by", "carmen", "--note", "API docs updated")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "Documentation updated: signed off by carmen on release/v1.1.0"
    gh.set_check("release/v1.1.0", None)
    gh.add_review(1, "ana-cerniq", "APPROVED", "2026-12-01T11:00:00Z")
    items = status("--version", "v1.1.0")
    assert items["docs"]["state"] == "ok"
    assert items["docs"]["evidence"].startswith("signed off by carmen ")
    assert items["docs"]["evidence"].endswith(": API docs updated")
    assert items["ci"]["state"] == "pending"
    assert items["tech-lead"]["evidence"] == "ana-cerniq approved PR #1"
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() == "develop"

    text = invoke("release.status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("release v1.1.0 (release/v1.1.0 at ")
    assert any("Documentation updated" in line and " ok " in line for line in lines)
    assert lines[-1] == "not ready: 4 pre-release/approval item(s) missing"

    bad = invoke("release.signoff", "docs", "--by", "zoe")
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "error: unknown person 'zoe'; --by takes a name from team.yml people",
    )
    nonote = invoke("release.signoff", "rollback-plan", "--by", "ana")
    assert nonote.returncode == 2 and len(nonote.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "skip,named",
    [
        ("ci", "All tests passing on release branch (failed on "),
        ("tech-lead", "Tech Lead approval (PR #1: ana-cerniq (no review))"),
        ("qa-lead", "QA Lead approval (PR #1: dan-cerniq (no review))"),
        ("rollback-plan", "Rollback plan documented (no sign-off; "),
        ("docs", "Documentation updated (no sign-off; "),
    ],
)
def test_finish_refuses_naming_the_missing_gate_and_changes_nothing(app, gh, skip, named):
    origin, root, _ = app
    assert invoke("release.start", "--bump", "minor").returncode == 0
    make_ready(origin, root, gh, skip=skip)
    before, posts = refs(origin), len(gh.releases)
    r = invoke("release.finish", "--confirm", "DEPLOY PRODUCTION")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: release v1.1.0 is not ready, nothing was changed: 1 item(s) missing: "
    )
    assert named in lines[0]
    assert refs(origin) == before and len(gh.releases) == posts
    assert git(root, "tag", "--list", "v1.1.0") == ""


def test_finish_refuses_while_staging_lacks_a_migration(app, gh, tmp_path, make_db):
    origin, root, _ = app
    fresh = make_db()  # staging now points at a database with nothing applied
    gd = tmp_path / "tb" / "group_data" / "staging.py"
    gd.write_text(f"db_name = {fresh['dbname']!r}\ndb_user = {ADMIN['user']!r}\n")
    assert invoke("release.start", "--bump", "minor").returncode == 0
    make_ready(origin, root, gh)
    before = refs(origin)
    r = invoke("release.finish", "--confirm", "DEPLOY PRODUCTION")
    assert r.returncode == 2
    assert "Database migrations tested (on staging: 0001 pending" in r.stderr
    assert "`invoke db.migrate --env staging`" in r.stderr
    assert refs(origin) == before


def test_finish_dry_run_lists_every_action_and_connects_nowhere(app, gh):
    origin, root, _ = app
    assert invoke("release.start", "--bump", "minor").returncode == 0
    make_ready(origin, root, gh)
    before = refs(origin)
    r = invoke("release.finish", "--dry-run", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["dry_run"]
    assert [s["name"] for s in report["steps"]] == [s.__name__ for s in release.FINISH]
    actions = report["facts"]["actions"]
    assert actions[:3] == [
        "git checkout --quiet -B main origin/main",
        "git merge --quiet --no-ff -m Merge branch 'release/v1.1.0' origin/release/v1.1.0",
        "git push --quiet origin main",
    ]
    assert "git push origin refs/tags/v1.1.0" in actions
    assert any(
        a.startswith("deploy --env production --version v1.1.0: validate, ") for a in actions
    )
    assert "GitHub: publish release v1.1.0 with the CHANGELOG section" in actions
    assert "git push --quiet origin --delete release/v1.1.0" in actions
    assert refs(origin) == before and gh.releases == []


def test_start_dry_run_lists_the_git_and_github_actions_and_changes_nothing(app, gh):
    origin, root, _ = app
    before = refs(origin)
    r = invoke("release.start", "--bump", "major", "--dry-run", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    actions = json.loads(r.stdout)["facts"]["actions"]
    assert actions[0].startswith("git checkout --quiet -b release/v2.0.0 ")
    assert "write package.json version 2.0.0" in actions
    assert "write package-lock.json version 2.0.0" in actions
    assert "write CHANGELOG.md section 2.0.0 (3 change(s))" in actions
    assert "git push --quiet --set-upstream origin release/v2.0.0" in actions
    assert (
        "GitHub: open PR release/v2.0.0 -> main, request ana-cerniq, dan-cerniq, elena-cerniq"
        in actions
    )
    assert refs(origin) == before and gh.requests == []
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "branch", "--list", "release/*") == ""


def test_bad_input_is_one_line_exit_2_and_nothing_connects(app, gh):
    origin, root, _ = app
    before = refs(origin)
    r = invoke("release.start", "--bump", "huge")
    assert (r.returncode, r.stderr.strip()) == (
        2,
        "error: invalid --bump 'huge'; choose one of: major, minor, patch",
    )
    none = invoke("release.status")
    assert (none.returncode, none.stderr.strip()) == (
        2,
        "error: no open release: origin has no release/* branch; `invoke release.start`",
    )
    (root / "package.json").write_text("{}\n")
    dirty = invoke("release.start", "--bump", "patch")
    assert dirty.returncode == 2
    assert dirty.stderr.strip().startswith("error: ") and "uncommitted changes" in dirty.stderr
    assert refs(origin) == before and gh.requests == []


def test_finish_merges_tags_deploys_merges_back_publishes_and_a_rerun_never_tags_twice(
    app, gh, slack, monkeypatch
):
    """In process, hosts faked: the git and GitHub steps for real; deploy stands in (it is
    covered by tests/e2e/test_releases_live.py). The first run fails at the deploy, after the tag;
    the re-run continues and makes no second merge or tag."""
    from cerniq_ops import deploy, steps
    from cerniq_ops.errors import StepFailed
    from cerniq_ops.procedure import run
    from tasks.release import _context

    origin, root, _ = app
    assert invoke("release.start", "--bump", "minor").returncode == 0
    make_ready(origin, root, gh)
    state = fake_sessions(monkeypatch)
    published = iter([False, True])  # the tag's images appear while finish waits
    monkeypatch.setattr(
        steps,
        "registry_for",
        lambda s: type("R", (), {"has_manifest": lambda self, repo, tag: next(published, True)})(),
    )
    deploys = []

    class Done:
        facts = {"backup": "20261201-100000"}

        def to_dict(self):
            return {"ok": True}

    def fake_deploy(ctx):
        deploys.append((ctx.version, ctx.options["changes"], ctx.message))
        if len(deploys) == 1:
            raise StepFailed("deploy to production failed at step 'rolling_update': boom")
        return Done()

    monkeypatch.setattr(deploy, "deploy", fake_deploy)

    def finish():
        ctx = _context("release.finish", None, False, confirm="DEPLOY PRODUCTION", image_wait=5)
        return ctx, run(release.FINISH, ctx, on_failure=(release.notify_failure,))

    with pytest.raises(StepFailed, match="failed at step 'deploy_production'"):
        finish()
    tag_sha = git(origin, "rev-parse", "v1.1.0^{commit}").strip()
    assert git(origin, "cat-file", "-t", "v1.1.0").strip() == "tag"  # annotated
    assert gh.releases == [] and any("FAILED at deploy_production" in t for t in slack.texts())

    ctx, report = finish()
    assert report.ok
    assert "already merged into origin/main" in report.steps[2].detail
    assert report.steps[3].detail.startswith("v1.1.0 already on origin")
    assert git(origin, "rev-parse", "v1.1.0^{commit}").strip() == tag_sha
    assert git(origin, "tag", "--list").split() == ["v1.0.0", "v1.1.0"]
    merges = git(origin, "log", "--merges", "--format=%s", "main").splitlines()
    assert merges == ["Merge branch 'release/v1.1.0'"]
    assert git(origin, "merge-base", "--is-ancestor", "v1.1.0", "develop") == ""
    assert git(origin, "branch", "--list", "release/*") == ""
    assert [d[0] for d in deploys] == ["v1.1.0", "v1.1.0"]
    assert any(c.startswith("api: lead scoring (#12) (") for c in deploys[1][1])
    assert deploys[1][2] == "release v1.1.0"
    [rel] = gh.releases
    assert (rel["tag_name"], rel["name"]) == ("v1.1.0", "v1.1.0")
    assert rel["body"].startswith("### Breaking changes")
    announcement = slack.posts[-1]
    assert announcement["text"] == ":white_check_mark: Release v1.1.0 deployed to production"
    body = announcement["blocks"][-1]["text"]["text"]
    assert "**Deployment:** v1.1.0\n**Environment:** Production" in body
    assert "- api: lead scoring (#12) (" in body
    audited = [c for h in state.hosts.values() for c in h.commands if "audit.log" in c]
    assert any("merge_to_main" in c for c in audited)

    third = invoke("release.status")
    assert third.returncode == 2 and "no open release" in third.stderr


def test_finish_after_a_run_killed_between_its_local_merge_tag_and_push_pushes_those(
    app, gh, slack, monkeypatch
):
    """What a run killed after `git merge` and `git tag` but before their pushes leaves: the
    re-run pushes that merge and that tag (said as repairs), and makes no second of either."""
    from cerniq_ops import deploy, steps
    from cerniq_ops.procedure import run
    from tasks.release import _context

    origin, root, _ = app
    assert invoke("release.start", "--bump", "minor").returncode == 0
    make_ready(origin, root, gh)
    git(root, "fetch", "-q", "origin")
    git(root, "checkout", "-q", "-B", "main", "origin/main")
    git(
        root,
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge branch 'release/v1.1.0'",
        "origin/release/v1.1.0",
    )
    git(root, "tag", "-a", "v1.1.0", "-m", "Release v1.1.0")
    local_tag = git(root, "rev-parse", "v1.1.0").strip()
    git(root, "checkout", "-q", "develop")
    assert git(origin, "tag", "--list", "v1.1.0") == ""
    fake_sessions(monkeypatch)
    monkeypatch.setattr(
        steps,
        "registry_for",
        lambda s: type("R", (), {"has_manifest": lambda self, repo, tag: True})(),
    )

    class Done:
        facts: dict = {}

        def to_dict(self):
            return {"ok": True}

    monkeypatch.setattr(deploy, "deploy", lambda ctx: Done())
    ctx = _context("release.finish", None, False, confirm="DEPLOY PRODUCTION", image_wait=5)
    report = run(release.FINISH, ctx)
    assert report.ok
    assert report.repairs == [
        "release/v1.1.0 was merged into main here but not pushed: pushing it",
        "v1.1.0 was tagged here but not pushed: pushing it",
    ]
    assert git(origin, "rev-parse", "v1.1.0").strip() == local_tag
    assert git(origin, "log", "--merges", "--format=%s", "main").splitlines() == [
        "Merge branch 'release/v1.1.0'"
    ]
