"""Releases and hotfixes end to end on the testbed: `release.start` -> `release.finish` deploys
production under live load (0 failed requests); a hotfix from main with its SLA report and
post-mortem; a finish killed after its tag completes on re-run without a second tag.

The app repository is real (a bare origin and a checkout in a temporary folder, made by
tests/support/sample_app.py); the app's CI is played by a watcher thread: when a tag reaches
origin it marks the tag's commit green on the GitHub stand-in and pushes that version's images
to the testbed registry. GitHub and Slack are the local stand-ins."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

from cerniq_ops import settings
from cerniq_ops.verification import assert_verified
from testbed import images
from testbed.load import Load
from tests.support.cli import invoke
from tests.support.github_prs import GitHubPulls
from tests.support.interrupt import kill_after
from tests.support.sample_app import git, make_ready, make_released_app, refs

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parents[2]
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
SKIP_CI = ("--skip-ci-check", "--reason", "e2e test")


def app_urls() -> list[str]:
    s = settings.load("production")
    return [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]


class AppCI:
    """The app's CI: a tag pushed to origin gets a green check and its images published."""

    def __init__(self, origin: Path, gh: GitHubPulls, registry) -> None:
        self.origin, self.gh, self.registry = origin, gh, registry
        self.published: set[str] = {"v1.0.0"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for tag in git(self.origin, "tag", "--list", "v*").split():
                if tag not in self.published:
                    self.gh.set_check(tag, "success")
                    images.publish_app(self.registry, "cerniq", tag)
                    self.published.add(tag)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def world(testbed, tmp_path_factory):
    """Production and staging on v1.0.0 (migrations applied on staging); the app repository
    after its first release; the GitHub stand-in reading that origin; team.yml pointing there."""
    for env, extra in (("staging", ()), ("production", CONFIRM)):
        r = invoke("deploy", "--env", env, "--version", "v1.0.0", *SKIP_CI, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    where = tmp_path_factory.mktemp("release")
    origin, root = make_released_app(where)
    gh = GitHubPulls(origin=origin)
    team = yaml.safe_load((PROJECT / "team.yml").read_text())
    team["app_repo"] = str(root)
    (where / "team.yml").write_text(yaml.safe_dump(team, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CERNIQ_TEAM_FILE", str(where / "team.yml"))
        mp.setenv("CERNIQ_OVERRIDE_GITHUB_API", gh.url)
        mp.setenv("CERNIQ_OVERRIDE_GITHUB_REPO", gh.repo)
        mp.setenv("GITHUB_TOKEN", gh.token)
        ci = AppCI(origin, gh, testbed.registry())
        yield {"origin": origin, "root": root, "gh": gh, "ci": ci}
        ci.stop()
    gh.close()


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
    r = invoke("release.finish", *CONFIRM, "--image-wait", "300")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "v1.2.0 already on origin" in r.stdout
    assert git(origin, "rev-parse", "v1.2.0").strip() == tag
    assert git(origin, "tag", "--list", "v1.2.*").split() == ["v1.2.0"]
    merges = git(origin, "log", "--merges", "--format=%s", "main").splitlines()
    assert merges.count("Merge branch 'release/v1.2.0'") == 1
    assert [r["tag_name"] for r in gh.releases].count("v1.2.0") == 1
    assert git(origin, "branch", "--list", "release/*") == ""
    assert_verified("production")  # the re-run's deploy left production as verify wants it
