"""Release builders (seed 6.2, 6.3): versions, commits, changelog, package files, checklist."""

import json

import pytest

from cerniq_ops import release as r
from cerniq_ops.clients.github import summarize_checks
from cerniq_ops.errors import BadInput

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "current,bump,expected",
    [
        ("1.4.2", "minor", "1.5.0"),
        ("1.4.2", "patch", "1.4.3"),
        ("1.4.2", "major", "2.0.0"),
        ("v1.5.0-rc.1", "patch", "1.5.0"),
    ],
)
def test_next_version_bumps_as_npm_version(current, bump, expected):
    assert r.next_version(current, bump) == expected


def test_a_bad_bump_or_version_is_refused_with_one_line():
    with pytest.raises(
        BadInput, match=r"invalid --bump 'huge'; choose one of: major, minor, patch"
    ):
        r.next_version("1.0.0", "huge")
    with pytest.raises(BadInput, match=r"invalid version '1.x'"):
        r.next_version("1.x", "minor")


def test_conventional_commits_are_parsed_with_scope_bang_and_footer():
    assert r.parse_commit("a" * 40, "feat(api): lead scoring (#12)") == r.Commit(
        "a" * 40, "feat", "api", "lead scoring (#12)", ""
    )
    bang = r.parse_commit("b" * 40, "refactor!: drop v1")
    assert (bang.type, bang.breaking) == ("refactor", "drop v1")
    footer = r.parse_commit("c" * 40, "fix: x", "Details.\n\nBREAKING CHANGE: /v1 is gone")
    assert footer.breaking == "/v1 is gone"
    assert r.parse_commit("d" * 40, "Merge stuff").type == ""


def test_changelog_section_lists_breaking_features_fixes_and_leaves_the_rest_out():
    commits = [
        r.parse_commit("1" * 40, "feat(api): lead scoring (#12)"),
        r.parse_commit("2" * 40, "fix: null emails (#13)"),
        r.parse_commit("3" * 40, "docs: guide"),
        r.parse_commit("4" * 40, "refactor(api)!: drop v1 (#14)", "BREAKING CHANGE: /v1 is gone"),
        r.parse_commit("5" * 40, "tweak things"),
    ]
    assert r.changelog_section("1.1.0", "2026-12-02", commits) == (
        "## 1.1.0 (2026-12-02)\n\n"
        "### Breaking changes\n\n- **api:** /v1 is gone (4444444)\n\n"
        "### Features\n\n- **api:** lead scoring (#12) (1111111)\n\n"
        "### Fixes\n\n- null emails (#13) (2222222)\n"
    )
    assert r.changelog_section("1.0.1", "2026-12-02", commits[2:3]) == (
        "## 1.0.1 (2026-12-02)\n\nNo user-facing changes.\n"
    )


def test_the_section_goes_under_unreleased_once_and_is_read_back():
    log = "# Changelog\n\n## Unreleased\n\n## 1.0.0\n- First release.\n"
    section = "## 1.1.0 (2026-12-02)\n\n### Fixes\n\n- x (1234567)\n"
    new = r.insert_section(log, "1.1.0", section)
    assert new == (
        "# Changelog\n\n## Unreleased\n\n## 1.1.0 (2026-12-02)\n\n### Fixes\n\n- x (1234567)\n"
        "\n## 1.0.0\n- First release.\n"
    )
    assert r.insert_section(new, "v1.1.0", section) == new
    assert r.section_of(new, "v1.1.0") == "### Fixes\n\n- x (1234567)"
    assert r.section_of(new, "1.0.0") == "- First release."
    assert r.section_of(new, "1.1") is None
    assert r.change_list(r.section_of(new, "1.1.0")) == ["x (1234567)"]


def test_package_files_are_bumped_as_npm_version_writes_them():
    pkg = '{\n    "name": "app",\n    "version": "1.0.0",\n    "private": true\n}\n'
    assert r.bump_package_json(pkg, "1.1.0") == (
        '{\n    "name": "app",\n    "version": "1.1.0",\n    "private": true\n}\n'
    )
    lock = json.dumps(
        {
            "name": "app",
            "version": "1.0.0",
            "lockfileVersion": 3,
            "packages": {
                "": {"name": "app", "version": "1.0.0"},
                "node_modules/x": {"version": "9"},
            },
        },
        indent=2,
    )
    bumped = json.loads(r.bump_package_lock(lock, "1.1.0"))
    assert bumped["version"] == "1.1.0" and bumped["packages"][""]["version"] == "1.1.0"
    assert bumped["packages"]["node_modules/x"]["version"] == "9"
    assert r.lock_version(r.bump_package_lock(lock, "1.1.0")) == ("1.1.0", "1.1.0")


def test_signoffs_name_a_known_item_and_the_rollback_plan_needs_a_note():
    text = r.add_signoff(None, "1.1.0", "docs", "ana", "2026-12-02T10:00:00Z", "")
    assert r.signoffs(text) == {"docs": {"by": "ana", "at": "2026-12-02T10:00:00Z", "note": ""}}
    with pytest.raises(BadInput, match="unknown sign-off item 'qa'"):
        r.add_signoff(text, "1.1.0", "qa", "ana", "t", "")
    with pytest.raises(BadInput, match="rollback-plan needs --note"):
        r.add_signoff(text, "1.1.0", "rollback-plan", "ana", "t", " ")


def ready_facts(version="1.1.0", **kw) -> r.ReleaseFacts:
    f = r.ReleaseFacts(
        version=version,
        branch=f"release/v{version}",
        head="f" * 40,
        pr={"number": 7, "url": ""},
        ci=("success", "1 check(s) passed on ffffffffff"),
        package_version=version,
        lock_versions=(version, version),
        section="### Fixes\n\n- x (1234567)",
        migrations=(True, "3 migration(s) applied on staging, none pending (db.status)"),
        approvals={"ana-cerniq": "APPROVED", "dan-cerniq": "APPROVED"},
        roles={
            "tech-lead": ["ana-cerniq"],
            "qa-lead": ["dan-cerniq"],
            "product-owner": ["elena-cerniq"],
        },
        signoffs={
            k: {"by": "ana", "at": "t", "note": "n"}
            for k in ("prs-merged", "docs", "rollback-plan")
        },
    )
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_a_ready_minor_release_has_every_gate_ok_and_deployment_items_left_to_finish():
    items = r.checklist(ready_facts())
    assert r.missing_gates(items) == []
    assert [i.key for i in items if i.gate] == [
        "prs-merged",
        "ci",
        "version",
        "changelog",
        "docs",
        "release-notes",
        "migrations",
        "rollback-plan",
        "tech-lead",
        "qa-lead",
    ]
    later = {i.key: i.evidence for i in items if i.state == "later"}
    assert later["backup"] == "done by release.finish (deploy's create_backup)"
    assert {i.group for i in items} == {"pre-release", "approval", "deployment", "post-release"}


def test_each_missing_gate_is_named_with_its_evidence_in_one_refusal_line():
    f = ready_facts(
        ci=("failure", "failed on ffffffffff: check CI"),
        approvals={"ana-cerniq": "CHANGES_REQUESTED"},
        signoffs={},
        migrations=(False, "on staging: 0004 pending; `invoke db.migrate --env staging`"),
    )
    missing = r.missing_gates(r.checklist(f))
    assert [i.key for i in missing] == [
        "prs-merged",
        "ci",
        "docs",
        "migrations",
        "rollback-plan",
        "tech-lead",
        "qa-lead",
    ]
    line = r.refusal("1.1.0", missing)
    assert "\n" not in line
    assert line.startswith("release v1.1.0 is not ready, nothing was changed: 7 item(s) missing: ")
    assert "Tech Lead approval (PR #7: ana-cerniq (changes_requested))" in line
    assert "QA Lead approval (PR #7: dan-cerniq (no review))" in line
    assert "All tests passing on release branch (failed on ffffffffff: check CI)" in line


def test_a_major_release_also_needs_the_product_owner():
    missing = r.missing_gates(r.checklist(ready_facts("2.0.0")))
    assert [(i.key, i.evidence) for i in missing] == [
        ("product-owner", "PR #7: elena-cerniq (no review)")
    ]


def test_a_version_not_bumped_everywhere_is_missing():
    items = r.checklist(ready_facts(lock_versions=("1.1.0", "1.0.0")))
    version = next(i for i in items if i.key == "version")
    assert (version.state, version.evidence) == (
        "missing",
        "package.json 1.1.0, package-lock.json 1.1.0/1.0.0 on release/v1.1.0, want 1.1.0",
    )


def test_latest_review_per_person_counts_and_comments_do_not_reset_it():
    reviews = [
        {"user": {"login": "ana"}, "state": "CHANGES_REQUESTED", "submitted_at": "2026-12-01T09"},
        {"user": {"login": "ana"}, "state": "APPROVED", "submitted_at": "2026-12-01T10"},
        {"user": {"login": "ana"}, "state": "COMMENTED", "submitted_at": "2026-12-01T11"},
        {"user": {"login": "dan"}, "state": "APPROVED", "submitted_at": "2026-12-01T09"},
        {"user": {"login": "dan"}, "state": "CHANGES_REQUESTED", "submitted_at": "2026-12-01T12"},
    ]
    assert r.latest_reviews(reviews) == {"ana": "APPROVED", "dan": "CHANGES_REQUESTED"}


def test_checks_combine_statuses_and_check_runs():
    sha = "a" * 40
    ok = summarize_checks(
        sha,
        {"statuses": [{"context": "lint", "state": "success"}]},
        [{"name": "CI", "status": "completed", "conclusion": "success"}],
    )
    assert (ok.conclusion, ok.detail) == ("success", "2 check(s) passed on aaaaaaaaaa")
    running = summarize_checks(sha, {"statuses": []}, [{"name": "CI", "status": "in_progress"}])
    assert (running.conclusion, running.detail) == (
        "pending",
        "still running on aaaaaaaaaa: check CI",
    )
    bad = summarize_checks(
        sha,
        {
            "statuses": [
                {"context": "lint", "state": "failure"},
                {"context": "lint", "state": "success"},
            ]
        },
        [],
    )
    assert (bad.conclusion, bad.detail) == ("failure", "failed on aaaaaaaaaa: status lint")
    assert summarize_checks(sha, {"statuses": []}, []).conclusion == "none"
