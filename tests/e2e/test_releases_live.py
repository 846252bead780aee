"""Releases and hotfixes end to end on the testbed: `release.start` -> `release.finish` deploys
production under live load (0 failed requests); a hotfix from main with its SLA report and
post-mortem; a finish killed after its tag completes on re-run without a second tag.

The app repository is the testbed's (a bare origin and a checkout, testbed/sample_app.py); the
origin's post-receive hook is the app's CI (testbed/app_ci.py): a pushed release tag gets a
green check run on the GitHub stand-in and its images in the testbed registry, in the
background, as CI would. GitHub and Slack are the local stand-ins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import app_ci
from testbed.load import Load
from testbed.sample_app import git, refs
from tests.support.cli import invoke
from tests.support.github_prs import GitHubPulls
from tests.support.interrupt import kill_after
from tests.support.release_ready import make_ready

pytestmark = pytest.mark.e2e
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")


def app_urls() -> list[str]:
    s = settings.load("production")
    return [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]


@pytest.fixture(scope="module")
def world(testbed):
    """Production and staging on v1.0.0 (migrations applied on staging); the testbed's app
    repository (its origin after the first release, CERNIQ_APP_REPO its checkout) with the
    origin's CI reporting to the GitHub stand-in, which reads that origin."""
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", "v1.0.0", *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    origin = testbed.tb.app_repo_dir / "origin.git"
    root = Path(os.environ["CERNIQ_APP_REPO"])
    gh = GitHubPulls(origin=origin)
    app_ci.configure_github(origin, gh.url, gh.repo, gh.token)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CERNIQ_OVERRIDE_GITHUB_API", gh.url)
        mp.setenv("CERNIQ_OVERRIDE_GITHUB_REPO", gh.repo)
        mp.setenv("GITHUB_TOKEN", gh.token)
        yield {"origin": origin, "root": root, "gh": gh}
    gh.close()


def built_by_ci(origin: Path, tag: str) -> bool:
    """The origin's CI (testbed/app_ci.py) reported TAG green and published its images."""
    log = (origin / app_ci.LOG).read_text()
    return f"{tag}: check run CI success" in log and f"/cerniq/workers:{tag}" in log


def test_a_minor_release_from_start_to_finish_under_load_has_zero_failed_requests(
    world, slack, testinfra_host
):
    origin, root, gh = world["origin"], world["root"], world["gh"]
    r = invoke("release.start", "--bump", "minor")
    assert r.returncode == 0, r.stdout + r.stderr
    make_ready(origin, root, gh)
    status = invoke("release.status", "--json")
    assert json.loads(status.stdout)["ready"], status.stdout
    with Load(app_urls(), workers=4) as load:
        load.wait_for_requests(200)
        r = invoke("release.finish", *CONFIRM, "--image-wait", "300", "--json")
        load.wait_for_requests(load.result.total + 200)
    result = load.result
    assert r.returncode == 0, r.stderr
    assert result.failed == 0, result.failures[:5]
    assert set(result.versions) == {"v1.0.0", "v1.1.0"}
    report = json.loads(r.stdout)
    assert report["ok"] and report["version"] == "v1.1.0"
    assert [s["name"] for s in report["steps"]] == [
        "validate_finish",
        "release_gates",
        "merge_to_main",
        "tag_release",
        "wait_for_images",
        "deploy_production",
        "merge_back_to_develop",
        "publish_release",
        "announce_release",
        "close_release_branch",
    ]
    # git: one --no-ff merge into main, an annotated tag on it, main merged back into develop
    assert git(origin, "cat-file", "-t", "v1.1.0").strip() == "tag"
    assert git(origin, "log", "--merges", "--format=%s", "main").splitlines() == [
        "Merge branch 'release/v1.1.0'"
    ]
    assert git(origin, "merge-base", "--is-ancestor", "v1.1.0", "develop") == ""
    assert "## 1.1.0 (" in git(origin, "show", "main:CHANGELOG.md")
    # production runs it, with the deploy's backup taken
    for h in ("prod-app1",):
        assert testinfra_host(h).file("/opt/cerniq/current-version").content_string.strip() == (
            "v1.1.0"
        )
    assert report["facts"]["deploy"]["facts"].get("backup")
    # GitHub release and the announcement with the real change list
    [rel] = gh.releases
    assert rel["tag_name"] == "v1.1.0" and "lead scoring (#12)" in rel["body"]
    announced = [
        p for p in slack.posts if p["text"].endswith("Release v1.1.0 deployed to production")
    ]
    assert announced and "- api: lead scoring (#12) (" in announced[0]["blocks"][-1]["text"]["text"]
    assert built_by_ci(origin, "v1.1.0")  # the images came from the tag's push
    assert_verified("production")


def test_a_hotfix_from_main_reaches_production_with_its_sla_report(world, slack, testinfra_host):
    origin, root, gh = world["origin"], world["root"], world["gh"]
    r = invoke(
        "hotfix.start", "CERN-123", "--category", "security", "--description", "Login bypass"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    branch = "hotfix/CERN-123-login-bypass"
    assert (
        git(origin, "merge-base", branch, "main").strip()
        == git(origin, "rev-parse", "main").strip()
    )
    git(root, "checkout", "-q", branch)
    (root / "test/unit/login.test.js").write_text("// reproduces CERN-123\n")
    (root / "packages/api/src/auth.js").write_text("// fixed\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fix(auth): CERN-123 login bypass")
    git(root, "push", "-q", "origin", branch)
    git(root, "checkout", "-q", "develop")
    [number] = [n for n, p in gh.pulls.items() if p["head_ref"] == branch]
    gh.set_check(branch, "success")
    gh.add_review(number, "ana-cerniq", "APPROVED", "2026-12-02T10:30:00Z")
    refused = invoke("hotfix.finish", *CONFIRM)
    assert refused.returncode == 2 and "Minimum approvals (1 of 2" in refused.stderr
    gh.add_review(number, "bogdan-cerniq", "APPROVED", "2026-12-02T10:40:00Z")
    r = invoke("hotfix.finish", *CONFIRM, "--image-wait", "300")
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("== hotfix finished: v1.1.1; time to production ")
    assert "against the security SLA of 4h00m: met (" in last
    host = testinfra_host("prod-app1")
    assert host.file("/opt/cerniq/current-version").content_string.strip() == "v1.1.1"
    records = [
        json.loads(host.file(f"/opt/cerniq/incidents/{name}").content_string)
        for name in host.file("/opt/cerniq/incidents").listdir()
        if name.endswith(".json")
    ]
    [pm] = [x for x in records if x.get("type") == "post-mortem"]
    assert pm["hotfix"] == {"ticket": "CERN-123", "version": "1.1.1"} and pm["post_mortem_due"]
    assert git(origin, "merge-base", "--is-ancestor", "v1.1.1", "develop") == ""
    assert built_by_ci(origin, "v1.1.1")
    assert_verified("production")


def test_a_finish_killed_after_its_tag_completes_on_rerun_without_a_second_tag(world, slack):
    origin, root, gh = world["origin"], world["root"], world["gh"]
    for path, subject in (("packages/api/src/export.js", "feat: CSV export (#20)"),):
        (root / path).write_text(f"// {subject}\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", subject)
    git(root, "push", "-q", "origin", "develop")
    assert invoke("release.start", "--bump", "minor").returncode == 0
    make_ready(origin, root, gh, version="1.2.0")
    killed = kill_after(
        ("release.finish", *CONFIRM, "--image-wait", "300"), r"ok: v1\.2\.0 \(annotated\)"
    )
    assert killed.seen and not killed.ended, killed.output
    tag = git(origin, "rev-parse", "v1.2.0").strip()
    before = refs(origin)
    assert "refs/heads/release/v1.2.0" in before
    # the killed finish held production's deploy lock: nothing else deploys until released
    held = invoke("release.finish", *CONFIRM, "--image-wait", "300")
    assert held.returncode == 3 and "held by" in held.stderr, held.stdout + held.stderr
    assert refs(origin) == before
    released = invoke("lock.release", "--env", "production", "--confirm", "RELEASE production")
    assert released.returncode == 0 and "released: " in released.stdout, released.stdout
    r = invoke("release.finish", *CONFIRM, "--image-wait", "300")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "a previous run of release.finish died at step " in r.stdout
    assert "v1.2.0 already on origin" in r.stdout
    assert git(origin, "rev-parse", "v1.2.0").strip() == tag
    assert git(origin, "tag", "--list", "v1.2.*").split() == ["v1.2.0"]
    merges = git(origin, "log", "--merges", "--format=%s", "main").splitlines()
    assert merges.count("Merge branch 'release/v1.2.0'") == 1
    assert [r["tag_name"] for r in gh.releases].count("v1.2.0") == 1
    assert git(origin, "branch", "--list", "release/*") == ""
    assert_verified("production")  # the re-run's deploy left production as verify wants it
