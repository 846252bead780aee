"""A release made ready for `release.finish` on the sample app (testbed/sample_app.py) and the
GitHub stand-in (tests/support/github_prs.py): every gate holds but the one a test skips."""

from __future__ import annotations

from pathlib import Path

from cerniq_ops import release as release_rules
from testbed.sample_app import git


def make_ready(origin: Path, root: Path, gh, *, skip: str = "", version: str = "1.1.0") -> None:
    """Everything release_rules.finish gates on, except SKIP: sign-offs committed on the release
    branch, CI green on its head, the tech lead and QA lead approving the PR."""
    branch = f"release/v{version}"
    git(root, "checkout", "-q", branch)
    text = None
    for item in ("prs-merged", "docs", "rollback-plan"):
        if item != skip:
            text = release_rules.add_signoff(
                text, version, item, "ana", "2026-12-01T09:00:00Z", "ok"
            )
    if text:
        (root / ".cerniq/releases").mkdir(parents=True, exist_ok=True)
        (root / release_rules.signoff_path(version)).write_text(text)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "chore(release): sign-offs")
        git(root, "push", "-q", "origin", branch)
    git(root, "checkout", "-q", "develop")
    gh.set_check(branch, "failure" if skip == "ci" else "success")
    [number] = [n for n, p in gh.pulls.items() if p["head_ref"] == branch]
    for login, role in (("ana-cerniq", "tech-lead"), ("dan-cerniq", "qa-lead")):
        if role != skip:
            gh.add_review(number, login, "APPROVED", "2026-12-01T11:00:00Z")
