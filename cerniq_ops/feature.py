"""The feature development checklist (seed 3.3) of a pull request, judged from git and GitHub:
the branch is up to date with develop, its commits are conventional, behaviour changes come
with tests, CI passes, docs and changelog follow the documentation rules (docs_gate), the title
is conventional, the description is the PR template filled in (its checklist ticked by the
author: the author's recorded sign-off), a ticket is linked, the review rules' reviewers are
asked, labels are set.

`checklist(FeatureFacts, team)` -> items is pure; `gather` reads the facts from the app's
checkout (its origin fetched) and GitHub, for `invoke review.feature PR`.
The seed's other items belong to the ticket (READY_FOR_DEV, acceptance criteria: seed 3.2) and
to what follows the merge (the staging deploy and its verify: `invoke deploy`, `invoke verify`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cerniq_ops import app_repo, docs_gate, release, review, team
from cerniq_ops.clients import github
from cerniq_ops.errors import BadInput

TICKET = re.compile(r"\bCERN-[1-9][0-9]{0,6}\b")
TEST_PATH = re.compile(r"(^|/)(test|tests|__tests__)/|\.(test|spec)\.[jt]sx?$")
SOURCE_PATH = re.compile(r"(^|/)src/")
HEADING = re.compile(r"^##\s+(.+?)\s*$", re.M)
BOX = re.compile(r"^\s*- \[( |x|X)\]\s+(.+?)\s*$", re.M)


@dataclass(frozen=True)
class Item:
    group: str
    label: str
    ok: bool
    evidence: str


@dataclass
class FeatureFacts:
    number: int
    title: str
    body: str
    branch: str
    base: str
    labels: list[str]
    behind: int  # commits of the base branch the head does not have
    commits: list[tuple[str, str]]  # (sha, subject) on the branch since the base
    files: list[str]  # what the PR changes
    ci_passing: bool
    ci_detail: str
    doc_gaps: list[str]
    asked: set[str] = field(default_factory=set)  # requested or already reviewed
    author: str = ""


def sections(text: str) -> dict[str, str]:
    """`## Heading` -> the text under it."""
    parts = HEADING.split(text)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def description_gaps(body: str, template: str) -> list[str]:
    """What the PR description lacks against the template: its headings, a description that is
    more than the template's placeholder, a ticked type of change."""
    wanted, have = sections(template), sections(body or "")
    gaps = [f"no '## {h}' section" for h in wanted if h not in have]
    placeholder = wanted.get("Description", "")
    if "Description" in have and have["Description"] in ("", placeholder):
        gaps.append("the Description is the template's placeholder")
    kinds = BOX.findall(have.get("Type of Change", ""))
    if "Type of Change" in have and not any(mark != " " for mark, _ in kinds):
        gaps.append("no Type of Change ticked")
    return gaps


def unticked(body: str, heading: str = "Checklist") -> list[str]:
    return [
        text for mark, text in BOX.findall(sections(body or "").get(heading, "")) if mark == " "
    ]


def checklist(f: FeatureFacts, t: dict) -> list[Item]:
    template = t.get("pr_template", "")
    nonconventional = [s for sha, s in f.commits if not release.parse_commit(sha, s).type]
    sources = [p for p in f.files if SOURCE_PATH.search(p) and not TEST_PATH.search(p)]
    tests = [p for p in f.files if TEST_PATH.search(p)]
    need = review.requirement(t, f.files)
    missing_reviewers = [
        handle
        for handle in need.reviewers
        if not {team.github_login(t, p) for p in team.members(t, handle)} & f.asked
    ]
    gaps = description_gaps(f.body, template)
    boxes = unticked(f.body)
    ticket = TICKET.search(" ".join((f.title, f.branch, f.body or "")))
    title = release.parse_commit("", f.title)
    return [
        Item(
            "Before starting",
            "Branch from the latest develop",
            f.behind == 0,
            f"up to date with {f.base}"
            if f.behind == 0
            else f"{f.behind} commit(s) of {f.base} missing: merge or rebase {f.base}",
        ),
        Item(
            "During development",
            "Commits with meaningful messages",
            bool(f.commits) and not nonconventional,
            f"{len(f.commits)} commit(s), all conventional"
            if f.commits and not nonconventional
            else (
                "not conventional: " + "; ".join(repr(s) for s in nonconventional[:3])
                if nonconventional
                else "no commits on the branch"
            ),
        ),
        Item(
            "During development",
            "Tests updated for behaviour changes",
            not sources or bool(tests),
            f"{len(tests)} test file(s) changed"
            if tests
            else ("no source change" if not sources else f"{len(sources)} source file(s), no test"),
        ),
        Item("Before creating PR", "All tests pass (CI)", f.ci_passing, f.ci_detail),
        Item(
            "Before creating PR",
            "Documentation and changelog updated",
            not f.doc_gaps,
            "; ".join(f.doc_gaps) or "the documentation rules hold",
        ),
        Item(
            "Before creating PR",
            "Self-review, lint, tests, docs (the author's checklist)",
            not boxes and "Checklist" in sections(f.body or ""),
            "every box ticked by the author"
            if not boxes and "Checklist" in sections(f.body or "")
            else (
                "not ticked: " + ", ".join(boxes) if boxes else "no Checklist in the description"
            ),
        ),
        Item(
            "PR created",
            "Title follows convention",
            bool(title.type),
            f"{title.type}: conventional" if title.type else f"{f.title!r} is not `type: summary`",
        ),
        Item("PR created", "Description is complete", not gaps, "; ".join(gaps) or "complete"),
        Item(
            "PR created",
            "Linked to ticket",
            ticket is not None,
            ticket.group(0) if ticket else "no CERN-<number> in the title, branch or description",
        ),
        Item(
            "PR created",
            "Appropriate reviewers requested",
            not missing_reviewers and len(f.asked) >= need.approvals,
            (
                f"{len(f.asked)} asked ({', '.join(sorted(f.asked)) or 'nobody'}); "
                f"the rules want {need.approvals}"
                + (f" and {', '.join(missing_reviewers)}" if missing_reviewers else "")
            ),
        ),
        Item(
            "PR created",
            "Relevant labels added",
            bool(f.labels),
            ", ".join(f.labels) or "no labels",
        ),
    ]


def gather(
    root: Path, t: dict, pull: dict, reviews: list[dict], ci: github.CIStatus
) -> FeatureFacts:
    """The facts of PULL: its branch as origin has it (fetched first) against its base."""
    app_repo.fetch(root)
    head, base = f"origin/{pull['head']['ref']}", f"origin/{pull['base']['ref']}"
    for ref in (head, base):
        if app_repo.rev(root, ref) is None:
            raise BadInput(f"PR #{pull['number']}: {ref} is not in {root}'s origin")
    log = app_repo.git(root, "log", "--no-merges", "--format=%H%x1f%s", f"{base}..{head}")
    commits = [
        (sha, subject)
        for sha, _, subject in (line.partition("\x1f") for line in log.splitlines())
        if subject
    ]
    changed = app_repo.changed_files(root, base, head)
    service_root = t["docs"]["service_root"].strip("/")
    merge_base = app_repo.git(root, "merge-base", base, head).strip()
    at_base = app_repo.tree_paths(root, merge_base, service_root)
    gaps = docs_gate.gaps(t, changed, at_base, lambda p: app_repo.exists_at(root, head, p))
    asked = {u["login"] for u in pull.get("requested_reviewers") or []}
    asked |= {(r.get("user") or {}).get("login", "") for r in reviews} - {""}
    return FeatureFacts(
        number=pull["number"],
        title=pull.get("title") or "",
        body=pull.get("body") or "",
        branch=pull["head"]["ref"],
        base=base,
        labels=[label["name"] for label in pull.get("labels") or []],
        behind=int(app_repo.git(root, "rev-list", "--count", f"{head}..{base}").strip()),
        commits=commits,
        files=[path for _, path in changed],
        ci_passing=ci.passing,
        ci_detail=ci.detail,
        doc_gaps=gaps,
        asked=asked - {(pull.get("user") or {}).get("login", "")},
        author=(pull.get("user") or {}).get("login", ""),
    )
