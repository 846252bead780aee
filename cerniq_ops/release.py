"""Releases (seed 6.2, 6.3, 13.2) on the app's git repository, git-flow style.

release.start (T-3): develop -> release/vX.Y.Z, version bumped in package.json and
package-lock.json (as `npm version` writes them), the CHANGELOG.md section from the conventional
commits since the last tag, pushed, the release PR to main with the tech lead and QA lead asked.
release.status: the 6.3 checklist, each item a check the tool runs or a named person's sign-off.
release.finish (release day): refuses naming every missing gate; then merge -> tag -> images ->
deploy production -> merge back -> GitHub release -> announcement, each step resumable.

Pure builders first (versions, commits, changelog, package files, checklist), then the steps.
Versions are parsed and bumped with the `semver` package; the commit parser is ours (a small
Conventional Commits 1.0 subset: `type(scope)!: description` and `BREAKING CHANGE:` footers).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import semver

from cerniq_ops import app_repo, notify
from cerniq_ops import team as team_rules
from cerniq_ops.clients import github
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, step

BUMPS = ("major", "minor", "patch")
RELEASE_PREFIX = "release/"
SIGNOFF_DIR = ".cerniq/releases"

# Seed 6.3 items that are a person's word, not a check: key -> label.
SIGNOFF_ITEMS = {
    "prs-merged": "All PRs merged to release branch",
    "docs": "Documentation updated",
    "rollback-plan": "Rollback plan documented",
    "maintenance-window": "Maintenance window announced",
}
NOTE_REQUIRED = ("rollback-plan",)  # the note says where the plan is written


# -- versions ----------------------------------------------------------------------------------
def parse_version(text: str) -> semver.Version:
    try:
        return semver.Version.parse(text.removeprefix("v"))
    except (ValueError, TypeError):
        raise BadInput(f"invalid version {text!r}: expected X.Y.Z (semantic versioning)") from None


def next_version(current: str, bump: str) -> str:
    """'1.4.2' + 'minor' -> '1.5.0' (pre-release and build parts dropped, as npm does)."""
    if bump not in BUMPS:
        raise BadInput(f"invalid --bump {bump!r}; choose one of: {', '.join(BUMPS)}")
    v = parse_version(current)
    return str(v.next_version(part=bump))


def is_major(version: str) -> bool:
    """A major release: X.0.0 (the product owner approves those, seed 6.3)."""
    v = parse_version(version)
    return v.minor == 0 and v.patch == 0


def branch_name(version: str) -> str:
    return f"{RELEASE_PREFIX}v{version.removeprefix('v')}"


def tag_name(version: str) -> str:
    return f"v{version.removeprefix('v')}"


# -- conventional commits ----------------------------------------------------------------------
_SUBJECT = re.compile(r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^()]*)\))?(?P<bang>!)?: (?P<desc>.+)$")
_BREAKING = re.compile(r"^BREAKING[ -]CHANGE: *(?P<text>.+)", re.MULTILINE)


@dataclass(frozen=True)
class Commit:
    sha: str
    type: str  # feat, fix, ... ; "" when the subject is not a conventional commit
    scope: str
    description: str
    breaking: str  # "" or what breaks

    def entry(self, text: str | None = None) -> str:
        scope = f"**{self.scope}:** " if self.scope else ""
        return f"- {scope}{text or self.description} ({self.sha[:7]})"


def parse_commit(sha: str, subject: str, body: str = "") -> Commit:
    m = _SUBJECT.match(subject.strip())
    if not m:
        return Commit(sha, "", "", subject.strip(), "")
    footer = _BREAKING.search(body or "")
    breaking = footer.group("text").strip() if footer else (m["desc"] if m["bang"] else "")
    return Commit(sha, m["type"].lower(), (m["scope"] or "").strip(), m["desc"].strip(), breaking)


SECTIONS = (("Breaking changes", "breaking"), ("Features", "feat"), ("Fixes", "fix"))


def changelog_section(version: str, date: str, commits: list[Commit]) -> str:
    """The CHANGELOG.md section of VERSION: Breaking changes, Features, Fixes (other commit types
    and non-conventional subjects are left out, as git-cliff's default does)."""
    lines = [f"## {version.removeprefix('v')} ({date})", ""]
    for title, kind in SECTIONS:
        if kind == "breaking":
            entries = [c.entry(c.breaking) for c in commits if c.breaking]
        else:
            entries = [c.entry() for c in commits if c.type == kind and not c.breaking]
        if entries:
            lines += [f"### {title}", "", *entries, ""]
    if len(lines) == 2:
        lines += ["No user-facing changes.", ""]
    return "\n".join(lines)


def _heading(version: str) -> re.Pattern:
    v = re.escape(version.removeprefix("v"))
    return re.compile(rf"^## \[?v?{v}\]?(?=[\s(]|$)", re.MULTILINE)


def insert_section(changelog: str, version: str, section: str) -> str:
    """CHANGELOG with SECTION placed above the newest released section (below `## Unreleased`);
    unchanged when VERSION already has a section (a re-run writes nothing)."""
    if _heading(version).search(changelog):
        return changelog
    for m in re.finditer(r"^## (.*)$", changelog, re.MULTILINE):
        if m.group(1).strip().lower().strip("[]") != "unreleased":
            return f"{changelog[: m.start()]}{section}\n{changelog[m.start() :]}"
    head = changelog if changelog.endswith("\n") or not changelog else changelog + "\n"
    return f"{head}\n{section}" if head else f"# Changelog\n\n{section}"


def section_of(changelog: str, version: str) -> str | None:
    """The body of VERSION's section (without its heading), or None when it has none."""
    m = _heading(version).search(changelog)
    if not m:
        return None
    rest = changelog[m.end() :].split("\n", 1)[1] if "\n" in changelog[m.end() :] else ""
    nxt = re.search(r"^## ", rest, re.MULTILINE)
    return (rest[: nxt.start()] if nxt else rest).strip("\n")


def change_list(section: str) -> list[str]:
    """The entries of a changelog section as the announcement lists them (seed 13.2)."""
    return [line[2:].replace("**", "") for line in section.splitlines() if line.startswith("- ")]


# -- package.json and package-lock.json, as `npm version` rewrites them -------------------------
def _indent(text: str) -> int | str:
    m = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    if not m:
        return 2
    return "\t" if m.group(1).startswith("\t") else len(m.group(1))


def _dump(data: Any, like: str) -> str:
    return json.dumps(data, indent=_indent(like), ensure_ascii=False) + "\n"


def package_version(text: str) -> str:
    try:
        return str(json.loads(text)["version"])
    except (ValueError, KeyError, TypeError):
        raise BadInput('package.json has no readable "version"') from None


def bump_package_json(text: str, version: str) -> str:
    data = json.loads(text)
    data["version"] = version
    return _dump(data, text)


def bump_package_lock(text: str, version: str) -> str:
    """The lock file's own version: the top-level field and `packages[""]` (lockfile v2/v3)."""
    data = json.loads(text)
    data["version"] = version
    root = data.get("packages", {}).get("")
    if isinstance(root, dict):
        root["version"] = version
    return _dump(data, text)


def lock_version(text: str) -> tuple[str | None, str | None]:
    data = json.loads(text)
    return data.get("version"), data.get("packages", {}).get("", {}).get("version")


# -- sign-offs: a file committed on the release branch, seen by every run and every clone -------
def signoff_path(version: str) -> str:
    return f"{SIGNOFF_DIR}/{tag_name(version)}.json"


def add_signoff(text: str | None, version: str, item: str, by: str, at: str, note: str) -> str:
    if item not in SIGNOFF_ITEMS:
        choices = ", ".join(SIGNOFF_ITEMS)
        raise BadInput(f"unknown sign-off item {item!r}; choose one of: {choices}")
    if item in NOTE_REQUIRED and not note.strip():
        raise BadInput(f"sign-off {item} needs --note saying where it is written (a doc or link)")
    data = json.loads(text) if text else {"version": tag_name(version), "signoffs": {}}
    data["signoffs"][item] = {"by": by, "at": at, "note": note}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def signoffs(text: str | None) -> dict[str, dict]:
    return json.loads(text).get("signoffs", {}) if text else {}


# -- the checklist (seed 6.3) ------------------------------------------------------------------
OK, MISSING, PENDING, LATER = "ok", "missing", "pending", "later"
GATING = ("pre-release", "approval")


@dataclass(frozen=True)
class Item:
    key: str
    group: str  # pre-release | approval | deployment | post-release
    label: str
    state: str  # ok | missing | pending | later (done by release.finish)
    evidence: str

    @property
    def gate(self) -> bool:
        return self.group in GATING


@dataclass
class ReleaseFacts:
    """What release.status and release.finish read; checklist() judges it."""

    version: str
    branch: str
    head: str
    pr: dict | None = None  # {"number", "url"}
    ci: tuple[str, str] = ("none", "not asked")  # (conclusion, detail)
    package_version: str | None = None
    lock_versions: tuple[str | None, str | None] | None = None  # None: no lock file
    section: str | None = None
    migrations: tuple[bool | None, str] = (None, "not checked")
    approvals: dict[str, list[str]] = field(default_factory=dict)  # login -> latest state
    roles: dict[str, list[str]] = field(default_factory=dict)  # role -> github logins
    signoffs: dict[str, dict] = field(default_factory=dict)
    done: dict[str, str] = field(default_factory=dict)  # post-release facts: key -> evidence

    def to_dict(self) -> dict:
        return asdict(self)


ROLE_LABELS = (
    ("tech-lead", "Tech Lead approval"),
    ("qa-lead", "QA Lead approval"),
    ("product-owner", "Product Owner approval (major release)"),
)


def latest_reviews(reviews: list[dict]) -> dict[str, str]:
    """login -> state of their latest review that counts (a COMMENTED one leaves it as it was)."""
    states: dict[str, str] = {}
    for r in sorted(reviews, key=lambda r: r.get("submitted_at") or ""):
        if r.get("state") in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            states[r["user"]["login"]] = r["state"]
    return states


def _signed(f: ReleaseFacts, key: str, group: str) -> Item:
    s = f.signoffs.get(key)
    if s:
        note = f": {s['note']}" if s.get("note") else ""
        return Item(key, group, SIGNOFF_ITEMS[key], OK, f"signed off by {s['by']} {s['at']}{note}")
    how = f"invoke release.signoff {key} --by NAME" + (
        " --note WHERE" if key in NOTE_REQUIRED else ""
    )
    return Item(key, group, SIGNOFF_ITEMS[key], MISSING, f"no sign-off; `{how}`")


def checklist(f: ReleaseFacts) -> list[Item]:
    """Seed 6.3, item by item, each with its state and the evidence it was judged on."""
    v = f.version.removeprefix("v")
    items = [_signed(f, "prs-merged", "pre-release")]
    conclusion, detail = f.ci
    state = OK if conclusion == "success" else PENDING if conclusion == "pending" else MISSING
    items.append(Item("ci", "pre-release", "All tests passing on release branch", state, detail))
    if f.package_version == v and (f.lock_versions is None or set(f.lock_versions) == {v}):
        lock = "" if f.lock_versions is None else " and package-lock.json"
        items.append(
            Item(
                "version",
                "pre-release",
                "Version numbers updated",
                OK,
                f"package.json{lock} at {v} on {f.branch}",
            )
        )
    else:
        found = f"package.json {f.package_version}"
        if f.lock_versions is not None:
            found += f", package-lock.json {'/'.join(str(x) for x in f.lock_versions)}"
        items.append(
            Item(
                "version",
                "pre-release",
                "Version numbers updated",
                MISSING,
                f"{found} on {f.branch}, want {v}",
            )
        )
    if f.section is None:
        items.append(
            Item(
                "changelog",
                "pre-release",
                "CHANGELOG.md updated",
                MISSING,
                f"CHANGELOG.md on {f.branch} has no section {v}",
            )
        )
    else:
        items.append(
            Item(
                "changelog",
                "pre-release",
                "CHANGELOG.md updated",
                OK,
                f"section {v} in CHANGELOG.md",
            )
        )
    items.append(_signed(f, "docs", "pre-release"))
    entries = change_list(f.section or "")
    items.append(
        Item(
            "release-notes",
            "pre-release",
            "Release notes drafted",
            OK if entries else MISSING,
            f"{len(entries)} change(s) in section {v}"
            if entries
            else f"section {v} lists no change",
        )
    )
    ok, evidence = f.migrations
    items.append(
        Item(
            "migrations",
            "pre-release",
            "Database migrations tested",
            OK if ok else MISSING if ok is False else PENDING,
            evidence,
        )
    )
    items.append(_signed(f, "rollback-plan", "pre-release"))
    pr = f"PR #{f.pr['number']}" if f.pr else "no release PR"
    for role, label in ROLE_LABELS:
        if role == "product-owner" and not is_major(v):
            continue
        logins = f.roles.get(role, [])
        approved = [u for u in logins if f.approvals.get(u) == "APPROVED"]
        if approved:
            items.append(Item(role, "approval", label, OK, f"{', '.join(approved)} approved {pr}"))
        elif not logins:
            items.append(Item(role, "approval", label, MISSING, f"no {role} in team.yml roles"))
        else:
            who = ", ".join(f"{u} ({f.approvals.get(u, 'no review').lower()})" for u in logins)
            items.append(Item(role, "approval", label, MISSING, f"{pr}: {who}"))
    items.append(_signed(f, "maintenance-window", "deployment"))
    for key, group, label, by in (
        ("backup", "deployment", "Backup created", "deploy's create_backup"),
        ("deployed", "deployment", "Deployment executed", "deploy_production"),
        ("smoke", "deployment", "Smoke tests passed", "deploy's post_deployment_verification"),
        (
            "healthy",
            "deployment",
            "Monitoring shows healthy",
            "deploy's post_deployment_verification",
        ),
        ("merged-main", "post-release", "Merge to main completed", "merge_to_main"),
        ("tagged", "post-release", "Tag created and pushed", "tag_release"),
        ("merged-develop", "post-release", "Merge back to develop", "merge_back_to_develop"),
        ("published", "post-release", "Release notes published", "publish_release"),
        ("notified", "post-release", "Stakeholders notified", "announce_release"),
    ):
        if key in f.done:
            items.append(Item(key, group, label, OK, f.done[key]))
        else:
            items.append(Item(key, group, label, LATER, f"done by release.finish ({by})"))
    return items


def missing_gates(items: list[Item]) -> list[Item]:
    return [i for i in items if i.gate and i.state != OK]


def refusal(version: str, missing: list[Item]) -> str:
    """The one line release.finish refuses with, naming every missing gate."""
    parts = "; ".join(f"{i.label} ({i.evidence})" for i in missing)
    return (
        f"release {tag_name(version)} is not ready, nothing was changed: {len(missing)} item(s) "
        f"missing: {parts}; see `invoke release.status`"
    )


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def poll(check, deadline_seconds: float, interval: float = 2.0) -> bool:
    """Call CHECK until it is true or the deadline passes (no fixed sleep hoping)."""
    end = time.monotonic() + deadline_seconds
    while True:
        if check():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(min(interval, max(0.0, end - time.monotonic())))


# == the procedures: steps over the app repository, GitHub, the registry and deploy ============
# Every step reads where things stand first (branch on origin, tag there, merge done, PR open,
# release published) and does only what is missing, so a re-run after any failure continues.


def _root(ctx: Context) -> Path:
    return ctx.options["root"]


def _gh(ctx: Context) -> tuple[str, str, str]:
    s = ctx.settings
    return s.github_api, s.github_repo, s.require_secret("github_token_env")


def _did(ctx: Context, line: str) -> None:
    """One git/GitHub/deploy action: listed (dry run) or done; the list goes into --json."""
    ctx.facts.setdefault("actions", []).append(line)
    ctx.note(("would: " if ctx.dry_run else "") + line)


def _run_git(ctx: Context, *args: str) -> str:
    _did(ctx, "git " + " ".join(args))
    return "" if ctx.dry_run else app_repo.git_step(_root(ctx), *args)


def open_releases(root: Path) -> list[str]:
    """Versions of the release branches on origin (a finished release's branch is deleted)."""
    names = app_repo.remote_branches(root, RELEASE_PREFIX)
    return [n.removeprefix(f"{RELEASE_PREFIX}v") for n in names]


def find_release(root: Path, version: str | None) -> str:
    """The open release's version: VERSION, or the only release branch on origin."""
    found = open_releases(root)
    if version:
        v = str(parse_version(version))
        if v not in found:
            raise BadInput(f"no open release {tag_name(v)}: origin has no {branch_name(v)}")
        return v
    if not found:
        raise BadInput("no open release: origin has no release/* branch; `invoke release.start`")
    if len(found) > 1:
        listed = ", ".join(tag_name(v) for v in found)
        raise BadInput(f"several open releases ({listed}); pass --version")
    return found[0]


def require_clean(root: Path) -> None:
    changed = app_repo.dirty(root)
    if changed:
        raise BadInput(
            f"{root} has uncommitted changes ({', '.join(changed[:5])}); commit or stash them"
        )


def reviewer_logins(t: dict, roles: tuple[str, ...]) -> dict[str, list[str]]:
    return {r: [team_rules.github_login(t, p) for p in t["roles"].get(r, [])] for r in roles}


# -- release.start -----------------------------------------------------------------------------
@step(offline=True)
def validate_start(ctx: Context) -> str:
    root, bump = _root(ctx), ctx.options["bump"]
    if bump not in BUMPS:
        raise BadInput(f"invalid --bump {bump!r}; choose one of: {', '.join(BUMPS)}")
    require_clean(root)
    _gh(ctx)
    app_repo.fetch(root)
    develop = app_repo.rev(root, "origin/develop")
    if develop is None:
        raise BadInput(f"origin has no develop branch ({root})")
    local = app_repo.rev(root, "develop")
    if local and local != develop and not app_repo.is_ancestor(root, local, develop):
        raise BadInput("local develop has commits origin/develop lacks; push or drop them first")
    text = app_repo.show(root, "origin/develop", "package.json")
    if text is None:
        raise BadInput("origin/develop has no package.json")
    current = package_version(text)
    version = next_version(current, bump)
    ctx.version = tag_name(version)
    others = [v for v in open_releases(root) if v != version]
    if others:
        raise BadInput(
            f"release {tag_name(others[0])} is still open; "
            "finish it first (`invoke release.finish`)"
        )
    if app_repo.remote_tag(root, tag_name(version)):
        raise BadInput(f"tag {tag_name(version)} already exists on origin; choose another --bump")
    since = app_repo.last_tag(root, "origin/develop")
    ctx.facts.update(version=version, previous=current, since=since, develop=develop)
    return f"{current} -> {version} ({bump}), commits since {since or 'the first commit'}"


@step(offline=True)
def create_release_branch(ctx: Context) -> str:
    root, v = _root(ctx), ctx.facts["version"]
    branch = branch_name(v)
    if app_repo.rev(root, f"origin/{branch}"):
        if app_repo.rev(root, branch) is None:
            _run_git(ctx, "branch", "--track", branch, f"origin/{branch}")
        _run_git(ctx, "checkout", "--quiet", branch)
        return f"{branch} already on origin: continuing it"
    if app_repo.rev(root, branch):
        _run_git(ctx, "checkout", "--quiet", branch)
        return f"{branch} exists here (not pushed yet): continuing it"
    _run_git(ctx, "checkout", "--quiet", "-b", branch, ctx.facts["develop"])
    return f"{branch} from develop {ctx.facts['develop'][:10]}"


@step(offline=True)
def update_version(ctx: Context) -> str:
    root, v = _root(ctx), ctx.facts["version"]
    wanted = {}
    ref = "HEAD" if not ctx.dry_run else ctx.facts["develop"]
    pkg = app_repo.show(root, ref, "package.json") or ""
    wanted["package.json"] = bump_package_json(pkg, v)
    lock = app_repo.show(root, ref, "package-lock.json")
    if lock is not None:
        wanted["package-lock.json"] = bump_package_lock(lock, v)
    changed = [p for p, text in wanted.items() if (app_repo.show(root, ref, p) or "") != text]
    for p in changed:
        _did(ctx, f"write {p} version {v}")
        if not ctx.dry_run:
            app_repo.write_if_changed(root, p, wanted[p])
    return f"{', '.join(changed)} at {v}" if changed else f"already at {v}"


@step(offline=True)
def write_changelog(ctx: Context) -> str:
    root, v = _root(ctx), ctx.facts["version"]
    ref = "HEAD" if not ctx.dry_run else ctx.facts["develop"]
    current = app_repo.show(root, ref, "CHANGELOG.md") or "# Changelog\n"
    if section_of(current, v) is not None:
        ctx.facts["section"] = section_of(current, v)
        return f"CHANGELOG.md already has {v}"
    rows = app_repo.commits_between(root, ctx.facts["since"], ctx.facts["develop"])
    commits = [parse_commit(*r) for r in rows]
    section = changelog_section(v, today(), commits)
    ctx.facts["section"] = section_of(insert_section(current, v, section), v)
    _did(ctx, f"write CHANGELOG.md section {v} ({len(change_list(section))} change(s))")
    if not ctx.dry_run:
        app_repo.write_if_changed(root, "CHANGELOG.md", insert_section(current, v, section))
    return f"section {v}: {len(change_list(section))} change(s) from {len(commits)} commit(s)"


@step(offline=True)
def commit_release(ctx: Context) -> str:
    root, v = _root(ctx), ctx.facts["version"]
    if not ctx.dry_run and not app_repo.dirty(root):
        return "nothing to commit"
    _run_git(ctx, "add", "package.json", "CHANGELOG.md")
    if (root / "package-lock.json").exists():
        _run_git(ctx, "add", "package-lock.json")
    _run_git(ctx, "commit", "--quiet", "-m", f"chore(release): {tag_name(v)}")
    return f"chore(release): {tag_name(v)}"


@step(offline=True)
def push_release_branch(ctx: Context) -> str:
    root, branch = _root(ctx), branch_name(ctx.facts["version"])
    if not ctx.dry_run and app_repo.rev(root, branch) == app_repo.rev(root, f"origin/{branch}"):
        return f"origin/{branch} up to date"
    _run_git(ctx, "push", "--quiet", "--set-upstream", "origin", branch)
    return f"pushed {branch}"


@step(offline=True)
def open_release_pr(ctx: Context) -> str:
    v, t = ctx.facts["version"], ctx.options["team"]
    api, repo, token = _gh(ctx)
    branch = branch_name(v)
    logins = [u for us in reviewer_logins(t, ("tech-lead", "qa-lead")).values() for u in us]
    if is_major(v):
        logins += reviewer_logins(t, ("product-owner",))["product-owner"]
    if ctx.dry_run:
        _did(ctx, f"GitHub: open PR {branch} -> main, request {', '.join(logins)}")
        return "would open the release PR"
    pr = github.find_pull(api, repo, branch, "main", token)
    opened = pr is None
    if opened:
        body = pr_body(v, ctx.facts.get("section") or "")
        pr = github.create_pull(
            api, repo, token, title=f"Release {tag_name(v)}", head=branch, base="main", body=body
        )
        _did(ctx, f"GitHub: opened PR #{pr['number']} {branch} -> main")
    asked = {u["login"] for u in pr.get("requested_reviewers", [])}
    reviewed = set(latest_reviews(github.pull_reviews(api, repo, pr["number"], token)))
    todo = [u for u in logins if u not in asked and u not in reviewed]
    if todo:
        github.request_reviewers(api, repo, pr["number"], token, todo)
        _did(ctx, f"GitHub: requested reviews of PR #{pr['number']} from {', '.join(todo)}")
    ctx.facts["pr"] = {"number": pr["number"], "url": pr.get("html_url", "")}
    how = "opened" if opened else "already open"
    return f"PR #{pr['number']} {how}; reviewers: {', '.join(logins)}"


def pr_body(version: str, section: str) -> str:
    """The release PR's description: the seed's PR template (15.1) filled in for a release."""
    return (
        f"## Description\nRelease {tag_name(version)} (seed 6.2): `develop` -> `main`.\n\n"
        f"## Changes\n{section or 'No user-facing changes.'}\n\n"
        "## Checklist\nThe release checklist (seed 6.3) is `invoke release.status`; "
        "`invoke release.finish` refuses until every pre-release and approval item holds.\n"
    )


@step(offline=True)
def back_to_develop(ctx: Context) -> str:
    """Leave the checkout on develop, fast-forwarded to origin (the new branch is on origin)."""
    root = _root(ctx)
    if app_repo.rev(root, "develop") is None:
        return "no local develop"
    _run_git(ctx, "checkout", "--quiet", "develop")
    behind = app_repo.rev(root, "develop") != app_repo.rev(root, "origin/develop")
    if not ctx.dry_run and behind and app_repo.is_ancestor(root, "develop", "origin/develop"):
        _run_git(ctx, "merge", "--quiet", "--ff-only", "origin/develop")
    return "checkout back on develop"


START = (
    validate_start,
    create_release_branch,
    update_version,
    write_changelog,
    commit_release,
    push_release_branch,
    open_release_pr,
    back_to_develop,
)


# -- release.status: gather the facts, judge them with checklist() ------------------------------
def staging_migrations() -> tuple[bool | None, str]:
    """Seed 6.3 "Database migrations tested": every migration applied on staging, as
    `invoke db.status --env staging` shows (None: staging could not be asked)."""
    from cerniq_ops import settings
    from migrations_runner import status

    try:
        s = settings.load("staging")
        rows = status(s.db_conninfo(s.require_secret("db_password_env")), s.migrations_path)
    except Exception as exc:  # the item says why it is unknown; it never hides the others
        from cerniq_ops.procedure import describe_exception

        return None, f"staging not readable: {describe_exception(exc)[:160]}"
    bad = [f"{r.version:04d} {r.state}" for r in rows if r.state != "applied"]
    if bad:
        return False, f"on staging: {', '.join(bad)}; `invoke db.migrate --env staging`"
    return True, f"{len(rows)} migration(s) applied on staging, none pending (db.status)"


def gather(ctx: Context, version: str) -> ReleaseFacts:
    root, t = _root(ctx), ctx.options["team"]
    api, repo, token = _gh(ctx)
    branch = branch_name(version)
    ref = f"origin/{branch}"
    head = app_repo.rev(root, ref) or ""
    f = ReleaseFacts(version=version, branch=branch, head=head)
    pkg = app_repo.show(root, ref, "package.json")
    f.package_version = package_version(pkg) if pkg else None
    lock = app_repo.show(root, ref, "package-lock.json")
    f.lock_versions = lock_version(lock) if lock is not None else None
    f.section = section_of(app_repo.show(root, ref, "CHANGELOG.md") or "", version)
    f.signoffs = signoffs(app_repo.show(root, ref, signoff_path(version)))
    ci = github.commit_checks(api, repo, head, token)
    f.ci = (ci.conclusion, ci.detail)
    f.migrations = staging_migrations()
    f.roles = reviewer_logins(t, ("tech-lead", "qa-lead", "product-owner"))
    pr = github.find_pull(api, repo, branch, "main", token, state="all")
    if pr:
        f.pr = {"number": pr["number"], "url": pr.get("html_url", "")}
        f.approvals = latest_reviews(github.pull_reviews(api, repo, pr["number"], token))
    tag = tag_name(version)
    if app_repo.is_ancestor(root, head, "origin/main"):
        f.done["merged-main"] = f"{branch} head {head[:10]} is on origin/main"
    if app_repo.remote_tag(root, tag):
        f.done["tagged"] = f"{tag} on origin"
        if app_repo.is_ancestor(root, app_repo.remote_tag(root, tag), "origin/develop"):
            f.done["merged-develop"] = f"{tag} is on origin/develop"
        if github.release_by_tag(api, repo, tag, token):
            f.done["published"] = f"GitHub release {tag}"
    return f


# -- release.signoff ---------------------------------------------------------------------------
def signoff(ctx: Context, item: str, by: str, note: str) -> str:
    """Record ITEM signed off by BY on the release branch (committed and pushed)."""
    root, t = _root(ctx), ctx.options["team"]
    if by not in t["people"]:
        raise BadInput(f"unknown person {by!r}; --by takes a name from team.yml people")
    require_clean(root)
    app_repo.fetch(root)
    version = find_release(root, ctx.options.get("version"))
    branch, path = branch_name(version), signoff_path(version)
    text = add_signoff(
        app_repo.show(root, f"origin/{branch}", path),
        version,
        item,
        by,
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        note,
    )
    back = app_repo.current_branch(root)
    app_repo.git(root, "checkout", "--quiet", "-B", branch, f"origin/{branch}")
    try:
        app_repo.write_if_changed(root, path, text)
        app_repo.git(root, "add", path)
        app_repo.git(root, "commit", "--quiet", "-m", f"chore(release): {item} signed off by {by}")
        app_repo.git(root, "push", "--quiet", "origin", branch)
    finally:
        app_repo.git(root, "checkout", "--quiet", back)
    return f"{SIGNOFF_ITEMS[item]}: signed off by {by} on {branch}"


# -- release.finish ----------------------------------------------------------------------------
def confirm_production(ctx: Context, what: str) -> None:
    """The typed confirmation deploy asks for, asked before anything changes."""
    s = ctx.settings
    if s.confirm_phrase and not ctx.dry_run:
        from cerniq_ops.confirm import require

        require(s.confirm_phrase, ctx.options.get("confirm"), f"{s.env.upper()} {what}")


@step(offline=True)
def validate_finish(ctx: Context) -> str:
    root = _root(ctx)
    require_clean(root)
    _gh(ctx)
    app_repo.fetch(root)
    version = find_release(root, ctx.options.get("version"))
    ctx.version = tag_name(version)
    ctx.facts.update(
        version=version,
        branch=branch_name(version),
        tag=tag_name(version),
        tag_message=f"Release {tag_name(version)}",
    )
    confirm_production(ctx, "RELEASE")
    return f"open release {tag_name(version)} ({branch_name(version)})"


@step(offline=True)
def release_gates(ctx: Context) -> str:
    """Every pre-release and approval item of seed 6.3 holds, or a refusal naming each one."""
    facts = gather(ctx, ctx.facts["version"])
    items = checklist(facts)
    ctx.facts["checklist"] = [asdict(i) for i in items]
    ctx.facts["head"] = facts.head
    ctx.facts["section"] = facts.section or ""
    missing = missing_gates(items)
    if missing:
        raise BadInput(refusal(ctx.facts["version"], missing))
    return f"{sum(1 for i in items if i.gate)} pre-release and approval items hold"


@step()
def merge_to_main(ctx: Context) -> str:
    root, branch, head = _root(ctx), ctx.facts["branch"], ctx.facts["head"]
    if app_repo.is_ancestor(root, head, "origin/main"):
        return f"{branch} already merged into origin/main"
    if app_repo.rev(root, "main") and app_repo.is_ancestor(root, head, "main"):
        ctx.repaired(f"{branch} was merged into main here but not pushed: pushing it")
    else:
        _run_git(ctx, "checkout", "--quiet", "-B", "main", "origin/main")
        _run_git(
            ctx, "merge", "--quiet", "--no-ff", "-m", f"Merge branch '{branch}'", f"origin/{branch}"
        )
    _run_git(ctx, "push", "--quiet", "origin", "main")
    return f"{branch} merged into main (--no-ff) and pushed"


def merge_commit(root: Path, head: str) -> str | None:
    """The merge commit on origin/main that brought HEAD in (what the tag points at)."""
    out = app_repo.git(
        root, "rev-list", "--ancestry-path", "--merges", "--reverse", f"{head}..origin/main"
    )
    return (out.split() or [None])[0]


@step()
def tag_release(ctx: Context) -> str:
    root, tag = _root(ctx), ctx.facts["tag"]
    if ctx.dry_run:
        _did(ctx, f"git tag -a {tag} -m '{ctx.facts['tag_message']}' <merge commit on main>")
        _did(ctx, f"git push origin refs/tags/{tag}")
        return f"would tag {tag}"
    on_origin = app_repo.remote_tag(root, tag)
    if on_origin:
        ctx.facts["tag_commit"] = on_origin
        return f"{tag} already on origin ({on_origin[:10]})"
    target = merge_commit(root, ctx.facts["head"])
    if target is None:
        raise StepFailed(f"no merge commit of {ctx.facts['head'][:10]} on origin/main to tag")
    local = app_repo.tag_object(root, tag)
    if local is None:
        _run_git(ctx, "tag", "-a", tag, "-m", ctx.facts["tag_message"], target)
    elif local[1] != target:
        raise StepFailed(
            f"local tag {tag} points at {local[1][:10]}, not {target[:10]}; "
            f"delete it (`git tag -d {tag}`) and re-run"
        )
    else:
        ctx.repaired(f"{tag} was tagged here but not pushed: pushing it")
    _run_git(ctx, "push", "--quiet", "origin", f"refs/tags/{tag}")
    ctx.facts["tag_commit"] = target
    return f"{tag} (annotated) on {target[:10]}, pushed"


@step()
def wait_for_images(ctx: Context) -> str:
    """The app's CI builds and pushes the tag's images; deploy needs every service's."""
    from cerniq_ops.steps import registry_for

    s, tag = ctx.settings, ctx.facts["tag"]
    wait = float(ctx.options.get("image_wait") or 1800)
    if ctx.dry_run:
        return f"would wait up to {wait:.0f}s for {tag} of {', '.join(s.services)} in {s.registry}"
    registry = registry_for(s)

    def missing() -> list[str]:
        return [x for x in s.services if not registry.has_manifest(f"{s.image_prefix}/{x}", tag)]

    if not poll(lambda: not missing(), wait, interval=min(5.0, max(0.2, wait / 20))):
        raise StepFailed(
            f"{tag} images not in {s.registry} after {wait:.0f}s "
            f"({', '.join(missing())} missing); is the tag's CI done? re-run finish"
        )
    return f"{tag} published for {', '.join(s.services)}"


@step()
def deploy_production(ctx: Context) -> str:
    """The deploy procedure (seed 7.2: backup, migrations, rolling replace, smoke, health)."""
    from cerniq_ops.deploy import DEPLOY, deploy

    tag = ctx.facts["tag"]
    changes = change_list(ctx.facts.get("section") or "")
    if ctx.dry_run:
        _did(
            ctx, f"deploy --env {ctx.env} --version {tag}: {', '.join(s.__name__ for s in DEPLOY)}"
        )
        return f"would deploy {tag} to {ctx.env}"
    inner = Context(  # under finish's own deploy lock, taken before its first git step
        ctx.settings,
        "deploy",
        version=tag,
        message=ctx.facts.get("deploy_message") or f"release {tag}",
        options={"confirm": ctx.options.get("confirm"), "changes": changes},
        progress=lambda line: ctx.progress(f"      {line}"),
        locking=False,
        held_lock=ctx.held_lock,
    )
    _did(ctx, f"deploy --env {ctx.env} --version {tag}")
    report = deploy(inner)
    ctx.facts["deploy"] = report.to_dict()
    backup = report.facts.get("backup")
    return f"{tag} on {ctx.env}" + (f" (backup {backup})" if backup else "")


@step()
def merge_back_to_develop(ctx: Context) -> str:
    root, tag = _root(ctx), ctx.facts["tag"]
    app_repo.git_step(root, "fetch", "--quiet", "origin")
    target = ctx.facts.get("tag_commit") or app_repo.remote_tag(root, tag) or "origin/main"
    if not ctx.dry_run and app_repo.is_ancestor(root, target, "origin/develop"):
        return f"{tag} already on origin/develop"
    _run_git(ctx, "checkout", "--quiet", "-B", "develop", "origin/develop")
    if not ctx.dry_run and not app_repo.git_ok(
        root, "merge", "--quiet", "--no-ff", "-m", f"Merge tag '{tag}' into develop", target
    ):
        app_repo.git_ok(root, "merge", "--abort")
        raise StepFailed(
            f"merging {tag} into develop conflicts; merge it by hand, push develop, "
            "then re-run `invoke release.finish`"
        )
    _did(ctx, f"git merge --no-ff {tag} (into develop)")
    _run_git(ctx, "push", "--quiet", "origin", "develop")
    return f"{tag} merged into develop and pushed"


@step()
def publish_release(ctx: Context) -> str:
    tag = ctx.facts["tag"]
    api, repo, token = _gh(ctx)
    if ctx.dry_run:
        _did(ctx, f"GitHub: publish release {tag} with the CHANGELOG section")
        return f"would publish {tag}"
    if github.release_by_tag(api, repo, tag, token):
        return f"GitHub release {tag} already published"
    body = ctx.facts.get("section") or "No user-facing changes."
    made = github.create_release(api, repo, token, tag=tag, name=tag, body=body)
    _did(ctx, f"GitHub: published release {tag}")
    return f"GitHub release {tag} published ({made.get('html_url', '')})"


@step()
def announce_release(ctx: Context) -> str:
    s, tag = ctx.settings, ctx.facts["tag"]
    changes = change_list(ctx.facts.get("section") or "")
    if ctx.dry_run:
        _did(ctx, f"Slack: deployment announcement of {tag} ({len(changes)} change(s))")
        return "would announce"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = notify.deployment_announcement(tag, s.env, when, changes, f"Release {tag} (seed 6.2).")
    fields = {"Version": tag, "Environment": s.env, "Changes": str(len(changes))}
    payload = notify.slack_payload(
        notify.Fields(f"Release {tag} deployed to {s.env}", fields, True, body)
    )
    delivery = notify.post_kind("announcement", s.secret("slack_webhook_env"), payload)
    ctx.facts["announcement"] = body
    return delivery.detail


@step()
def close_release_branch(ctx: Context) -> str:
    root, branch = _root(ctx), ctx.facts["branch"]
    if not ctx.dry_run and app_repo.rev(root, f"origin/{branch}") is None:
        return f"{branch} already deleted"
    _run_git(ctx, "push", "--quiet", "origin", "--delete", branch)
    if app_repo.rev(root, branch):
        _run_git(ctx, "branch", "--quiet", "-D", branch)
    return f"{branch} deleted (finished)"


FINISH = (
    validate_finish,
    release_gates,
    merge_to_main,
    tag_release,
    wait_for_images,
    deploy_production,
    merge_back_to_develop,
    publish_release,
    announce_release,
    close_release_branch,
)


def notify_failure(ctx: Context) -> str:
    s = ctx.settings
    title = f"release.finish {ctx.version} FAILED at {ctx.facts.get('failed_step')}"
    body = f"{ctx.facts.get('error')}\nRe-run `invoke release.finish`: it continues from there."
    payload = notify.slack_payload(notify.Fields(title, {"Version": str(ctx.version)}, False, body))
    return notify.post_kind("deploy", s.secret("slack_webhook_env"), payload).detail


def offline(steps: tuple) -> tuple:
    """The same steps, all run before connecting: a dry run touches no host."""
    import functools

    def wrap(s):
        @functools.wraps(s)
        def inner(ctx):
            return s(ctx)

        inner.offline, inner.audited = True, False  # type: ignore[attr-defined]
        return inner

    return tuple(wrap(s) for s in steps)
