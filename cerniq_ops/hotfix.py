"""Hotfixes (seed 8.1, 8.2, 8.3) on the app's git repository, git-flow style.

hotfix.start: main -> hotfix/CERN-123-<slug>, the patch version bumped, the category and the
start of the SLA clock recorded in `.cerniq/hotfixes/CERN-123.json` (committed on the branch:
every run and every clone reads the same clock), pushed, the PR to main opened with the tech
lead (and for security the security champion) asked, the team notified.
hotfix.status: the 8.3 checklist and the SLA time left. hotfix.finish: CI passing and 1 approval
(2 for security), then the release procedure's own git steps (merge --no-ff, annotated patch tag,
images, deploy production with its backup, merge back to develop, GitHub release), the
post-mortem incident record due within 24 h (seed 8.2 step 6), and the time to production
against the SLA.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cerniq_ops import app_repo, business, incident, notify, release
from cerniq_ops.audit import actor
from cerniq_ops.clients import github
from cerniq_ops.clock import TIME_FORMAT, parse_time
from cerniq_ops.errors import BadInput
from cerniq_ops.procedure import Context, step
from cerniq_ops.release import OK, PENDING, Item

PREFIX = "hotfix/"
RECORD_DIR = ".cerniq/hotfixes"
TICKET = re.compile(r"^CERN-[1-9][0-9]{0,6}\Z")


@dataclass(frozen=True)
class Category:
    name: str
    priority: str
    fix: timedelta | None  # None: counted in business days (major_functionality)
    deploy: timedelta | None
    business_days: float = 0
    severity: str = "P1"  # the post-mortem's incident severity


# Seed 8.1, as data.
CATEGORIES = {
    "security": Category("security", "CRITICAL", timedelta(hours=2), timedelta(hours=4)),
    "data_loss": Category("data_loss", "CRITICAL", timedelta(hours=2), timedelta(hours=4)),
    "service_outage": Category(
        "service_outage", "HIGH", timedelta(hours=4), timedelta(hours=8), severity="P2"
    ),
    "major_functionality": Category(
        "major_functionality", "HIGH", None, None, business_days=1, severity="P2"
    ),
}
APPROVALS = {"security": 2}  # seed 8.2 step 4: minimum 1 approval, 2 for security
POST_MORTEM_HOURS = 24


# -- pure builders -----------------------------------------------------------------------------
def category(name: str) -> Category:
    if name not in CATEGORIES:
        raise BadInput(f"invalid --category {name!r}; choose one of: {', '.join(CATEGORIES)}")
    return CATEGORIES[name]


def validate_ticket(ticket: str) -> str:
    if not isinstance(ticket, str) or not TICKET.match(ticket):
        raise BadInput(f"invalid ticket {ticket!r}: expected CERN-<number>, e.g. CERN-123")
    return ticket


def slug(description: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", description.lower()).strip("-")
    cut = words[:limit].rstrip("-")
    if not cut:
        raise BadInput("a hotfix needs a --description (what is broken), e.g. 'login bypass'")
    return cut


def branch_name(ticket: str, description: str) -> str:
    return f"{PREFIX}{validate_ticket(ticket)}-{slug(description)}"


def record_path(ticket: str) -> str:
    return f"{RECORD_DIR}/{ticket}.json"


def new_record(
    *,
    ticket: str,
    cat: Category,
    description: str,
    at: datetime,
    who: str,
    version: str,
    branch: str,
) -> dict:
    return {
        "ticket": ticket,
        "category": cat.name,
        "priority": cat.priority,
        "description": description.strip(),
        "started_at": at.strftime(TIME_FORMAT),
        "started_by": who,
        "version": version,
        "branch": branch,
    }


def hm(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    return f"{'-' if delta.total_seconds() < 0 else ''}{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Clock:
    """Where a hotfix stands against its SLA (seed 8.1)."""

    category: str
    elapsed: timedelta  # wall clock, or business time for a business-day SLA
    fix_budget: timedelta
    deploy_budget: timedelta
    business: bool

    @property
    def fix_left(self) -> timedelta:
        return self.fix_budget - self.elapsed

    @property
    def deploy_left(self) -> timedelta:
        return self.deploy_budget - self.elapsed

    def line(self) -> str:
        kind = " business time" if self.business else ""
        if self.deploy_left < timedelta(0):
            state = f"SLA BREACHED: deploy was due {hm(-self.deploy_left)} ago"
        else:
            state = f"{hm(self.fix_left)} left to fix, {hm(self.deploy_left)} left to deploy"
        return f"{self.category}: {hm(self.elapsed)}{kind} since start; {state}"

    def report(self) -> str:
        """hotfix.finish's last line: time to production against the SLA."""
        met = self.elapsed <= self.deploy_budget
        verdict = (
            f"met ({hm(self.deploy_left)} to spare)"
            if met
            else f"MISSED by {hm(-self.deploy_left)}"
        )
        kind = " business time" if self.business else ""
        return (
            f"time to production {hm(self.elapsed)}{kind} against the {self.category} SLA of "
            f"{hm(self.deploy_budget)}: {verdict}"
        )


def clock(record: dict, now: datetime, team: dict) -> Clock:
    cat = category(record["category"])
    started = parse_time(record["started_at"])
    if cat.fix is None:
        budget = timedelta(hours=business.day_hours(team) * cat.business_days)
        return Clock(cat.name, business.elapsed(team, started, now), budget, budget, True)
    return Clock(cat.name, now - started, cat.fix, cat.deploy, False)


def post_mortem(record: dict, at: datetime, env: str, who: str, clock_line: str) -> dict:
    """The post-mortem as an incident record (seed 8.2 step 6: within 24 hours)."""
    cat = category(record["category"])
    return incident.new_incident(
        at=at,
        env=env,
        severity_name=cat.severity,
        title=f"Post-mortem: {record['ticket']} {record['description']}",
        who=who,
        kind="post-mortem",
        summary=f"Hotfix {record['version']} ({cat.name}, {cat.priority}). {clock_line}",
        post_mortem_due=incident.fmt(at + timedelta(hours=POST_MORTEM_HOURS)),
        hotfix={"ticket": record["ticket"], "version": record["version"]},
    )


def approvals_needed(category_name: str) -> int:
    return APPROVALS.get(category_name, 1)


def gates(record: dict, ci: tuple[str, str], approvals: dict[str, str], pr: dict | None) -> list:
    """hotfix.finish's gates (seed 8.2 step 4, 8.3 Review): CI passing, enough approvals."""
    items = []
    conclusion, detail = ci
    state = OK if conclusion == "success" else PENDING if conclusion == "pending" else "missing"
    items.append(Item("ci", "review", "CI passing", state, detail))
    approved = sorted(u for u, s in approvals.items() if s == "APPROVED")
    need = approvals_needed(record["category"])
    where = f"PR #{pr['number']}" if pr else "no PR to main"
    evidence = f"{len(approved)} of {need} approval(s) on {where}" + (
        f" ({', '.join(approved)})" if approved else ""
    )
    items.append(
        Item(
            "approvals",
            "review",
            "Minimum approvals",
            OK if len(approved) >= need else "missing",
            evidence,
        )
    )
    return items


# -- steps -------------------------------------------------------------------------------------
def open_hotfixes(root: Path) -> list[str]:
    return app_repo.remote_branches(root, PREFIX)


def find_hotfix(root: Path, ticket: str | None) -> tuple[str, dict]:
    """(branch, record) of the open hotfix: TICKET's, or the only hotfix/* branch on origin."""
    found = open_hotfixes(root)
    if ticket:
        validate_ticket(ticket)
        found = [b for b in found if b.startswith(f"{PREFIX}{ticket}-")]
        if not found:
            raise BadInput(f"no open hotfix for {ticket}: origin has no {PREFIX}{ticket}-* branch")
    if not found:
        raise BadInput("no open hotfix: origin has no hotfix/* branch; `invoke hotfix.start`")
    if len(found) > 1:
        raise BadInput(f"several open hotfixes ({', '.join(found)}); pass --ticket")
    branch = found[0]
    ticket = branch.removeprefix(PREFIX).split("-", 2)
    text = app_repo.show(root, f"origin/{branch}", record_path("-".join(ticket[:2])))
    if text is None:
        raise BadInput(f"{branch} has no hotfix record; was it made by `invoke hotfix.start`?")
    return branch, json.loads(text)


def _now(ctx: Context) -> datetime:
    at = ctx.options.get("now")
    return at if isinstance(at, datetime) else datetime.now(UTC)


@step(offline=True)
def validate_start(ctx: Context) -> str:
    o, root = ctx.options, release._root(ctx)
    ticket = validate_ticket(o["ticket"])
    cat = category(o["category"])
    branch = branch_name(ticket, o.get("description") or "")
    release.require_clean(root)
    release._gh(ctx)
    app_repo.fetch(root)
    main = app_repo.rev(root, "origin/main")
    if main is None:
        raise BadInput(f"origin has no main branch ({root})")
    others = [b for b in open_hotfixes(root) if b.startswith(f"{PREFIX}{ticket}-") and b != branch]
    if others:
        raise BadInput(f"{ticket} already has hotfix branch {others[0]}")
    resumed = app_repo.show(root, f"origin/{branch}", record_path(ticket))
    if resumed is None and app_repo.rev(root, branch):
        resumed = app_repo.show(root, branch, record_path(ticket))
    if resumed:
        record = json.loads(resumed)
    else:
        current = release.package_version(app_repo.show(root, "origin/main", "package.json") or "")
        version = release.next_version(current, "patch")
        record = new_record(
            ticket=ticket,
            cat=cat,
            description=o["description"],
            at=_now(ctx),
            who=actor(),
            version=version,
            branch=branch,
        )
    ctx.version = release.tag_name(record["version"])
    ctx.facts.update(record=record, branch=branch, main=main, version=record["version"])
    return f"{ticket} {cat.name} ({cat.priority}): {branch}, {ctx.version}"


@step(offline=True)
def create_hotfix_branch(ctx: Context) -> str:
    root, branch = release._root(ctx), ctx.facts["branch"]
    if app_repo.rev(root, f"origin/{branch}"):
        release._run_git(ctx, "checkout", "--quiet", "-B", branch, f"origin/{branch}")
        return f"{branch} already on origin: continuing it"
    if app_repo.rev(root, branch):
        release._run_git(ctx, "checkout", "--quiet", branch)
        return f"{branch} exists here (not pushed yet): continuing it"
    release._run_git(ctx, "checkout", "--quiet", "-b", branch, ctx.facts["main"])
    return f"{branch} from main {ctx.facts['main'][:10]} (not develop)"


@step(offline=True)
def record_hotfix(ctx: Context) -> str:
    """The category, the SLA clock's start and the patch version, committed on the branch."""
    root, record = release._root(ctx), ctx.facts["record"]
    v, ticket = record["version"], record["ticket"]
    files = {record_path(ticket): json.dumps(record, indent=2, sort_keys=True) + "\n"}
    ref = "HEAD" if not ctx.dry_run else ctx.facts["main"]
    files["package.json"] = release.bump_package_json(app_repo.show(root, ref, "package.json"), v)
    lock = app_repo.show(root, ref, "package-lock.json")
    if lock is not None:
        files["package-lock.json"] = release.bump_package_lock(lock, v)
    log = app_repo.show(root, ref, "CHANGELOG.md") or "# Changelog\n"
    entry = f"## {v} ({record['started_at'][:10]})\n\n### Fixes\n\n"
    entry += f"- {ticket}: {record['description']}\n"
    files["CHANGELOG.md"] = release.insert_section(log, v, entry)
    changed = [p for p, t in files.items() if (app_repo.show(root, ref, p) or "") != t]
    branch = ctx.facts["branch"]
    if not changed:
        if app_repo.rev(root, branch) != app_repo.rev(root, f"origin/{branch}"):
            release._run_git(ctx, "push", "--quiet", "--set-upstream", "origin", branch)
        return f"recorded already ({record['started_at']})"
    for p in changed:
        release._did(ctx, f"write {p}")
        if not ctx.dry_run:
            app_repo.write_if_changed(root, p, files[p])
    release._run_git(ctx, "add", *changed)
    release._run_git(
        ctx,
        "commit",
        "--quiet",
        "-m",
        f"chore(hotfix): {ticket} {record['category']}, {release.tag_name(v)}",
    )
    release._run_git(ctx, "push", "--quiet", "--set-upstream", "origin", ctx.facts["branch"])
    return f"{record['category']} SLA clock started {record['started_at']}; {', '.join(changed)}"


@step(offline=True)
def open_hotfix_pr(ctx: Context) -> str:
    record, t, branch = ctx.facts["record"], ctx.options["team"], ctx.facts["branch"]
    roles = (
        ("tech-lead", "security-champion") if record["category"] == "security" else ("tech-lead",)
    )
    logins = [u for us in release.reviewer_logins(t, roles).values() for u in us]
    if ctx.dry_run:
        release._did(ctx, f"GitHub: open PR {branch} -> main, request {', '.join(logins)}")
        return "would open the hotfix PR"
    api, repo, token = release._gh(ctx)
    pr = github.find_pull(api, repo, branch, "main", token)
    opened = pr is None
    if opened:
        body = (
            f"## Description\nHotfix {record['ticket']} ({record['category']}, "
            f"{record['priority']}): {record['description']}\n\n"
            f"Minimum {approvals_needed(record['category'])} approval(s) (seed 8.2).\n"
        )
        pr = github.create_pull(
            api,
            repo,
            token,
            title=f"Hotfix {record['ticket']}: {record['description']}",
            head=branch,
            base="main",
            body=body,
        )
        release._did(ctx, f"GitHub: opened PR #{pr['number']} {branch} -> main")
    asked = {u["login"] for u in pr.get("requested_reviewers", [])}
    reviewed = set(release.latest_reviews(github.pull_reviews(api, repo, pr["number"], token)))
    todo = [u for u in logins if u not in asked | reviewed]
    if todo:
        github.request_reviewers(api, repo, pr["number"], token, todo)
    ctx.facts["pr"] = {"number": pr["number"], "url": pr.get("html_url", "")}
    how = "opened" if opened else "already open"
    return f"PR #{pr['number']} {how}; reviewers {', '.join(logins)}"


@step(offline=True)
def notify_team(ctx: Context) -> str:
    record = ctx.facts["record"]
    cat = category(record["category"])
    if ctx.dry_run:
        release._did(ctx, f"Slack: hotfix {record['ticket']} started ({cat.priority})")
        return "would notify the team"
    c = clock(record, _now(ctx), ctx.options["team"])
    fields = {
        "Ticket": record["ticket"],
        "Category": cat.name,
        "Priority": cat.priority,
        "Version": release.tag_name(record["version"]),
        "Started by": record["started_by"],
    }
    body = f"{record['description']}\nBranch `{record['branch']}`. {c.line()}"
    payload = notify.slack_payload(
        notify.Fields(f"Hotfix {record['ticket']} started ({cat.priority})", fields, False, body)
    )
    return notify.post_kind("incident", ctx.settings.secret("slack_webhook_env"), payload).detail


START = (
    validate_start,
    create_hotfix_branch,
    record_hotfix,
    open_hotfix_pr,
    notify_team,
    release.back_to_develop,
)


# -- status ------------------------------------------------------------------------------------
def gather(ctx: Context, branch: str, record: dict) -> dict:
    root = release._root(ctx)
    api, repo, token = release._gh(ctx)
    head = app_repo.rev(root, f"origin/{branch}") or ""
    ci = github.commit_checks(api, repo, head, token)
    pr = github.find_pull(api, repo, branch, "main", token, state="all")
    approvals = (
        release.latest_reviews(github.pull_reviews(api, repo, pr["number"], token)) if pr else {}
    )
    requested = len(pr.get("requested_reviewers", [])) + len(approvals) if pr else 0
    changed = app_repo.git(root, "diff", "--name-only", f"origin/main...{head}").split()
    from_develop = [
        c
        for c in app_repo.git(root, "rev-list", f"origin/main..{head}").split()
        if app_repo.is_ancestor(root, c, "origin/develop")
    ]
    return {
        "head": head,
        "ci": (ci.conclusion, ci.detail),
        "pr": pr and {"number": pr["number"], "url": pr.get("html_url", "")},
        "approvals": approvals,
        "requested": requested,
        "changed": changed,
        "from_develop": from_develop,
    }


def checklist(record: dict, f: dict, t: dict) -> list[Item]:
    """Seed 8.3, each item a check or left to hotfix.finish."""
    need = approvals_needed(record["category"])
    tests = [p for p in f["changed"] if re.search(r"(^|/)(test|tests|__tests__)/|\.test\.", p)]
    tech = release.reviewer_logins(t, ("tech-lead",))["tech-lead"]
    tech_ok = [u for u in tech if f["approvals"].get(u) == "APPROVED"]
    own = {record_path(record["ticket"]), "package.json", "package-lock.json", "CHANGELOG.md"}
    fix_files = [p for p in f["changed"] if p not in own]
    items = [
        Item(
            "confirmed",
            "before",
            "Issue confirmed as hotfix-worthy",
            OK,
            f"{record['category']} ({record['priority']}) recorded by {record['started_by']}",
        ),
        Item(
            "tech-lead",
            "before",
            "Tech Lead approval obtained",
            OK if tech_ok else "missing",
            f"{', '.join(tech_ok)} approved" if tech_ok else f"no approval from {', '.join(tech)}",
        ),
        Item("ticket", "before", "Hotfix ticket created", OK, record["ticket"]),
        Item("notified", "before", "Team notified", OK, "posted by hotfix.start"),
        Item(
            "from-main",
            "development",
            "Branch from main (not develop)",
            "missing" if f["from_develop"] else OK,
            f"{len(f['from_develop'])} develop-only commit(s) on the branch"
            if f["from_develop"]
            else f"based on main, {record['branch']}",
        ),
        Item(
            "scope",
            "development",
            "Minimal change scope",
            OK if fix_files else PENDING,
            f"{len(fix_files)} file(s) changed besides the release files",
        ),
        Item(
            "test",
            "development",
            "Test reproducing bug added",
            OK if tests else "missing",
            ", ".join(tests[:3]) or "no test file changed",
        ),
        Item(
            "pr",
            "review",
            "PR created against main",
            OK if f["pr"] else "missing",
            f"PR #{f['pr']['number']}" if f["pr"] else "no PR to main",
        ),
        Item(
            "reviewers",
            "review",
            "Minimum reviewers assigned",
            OK if f["requested"] >= need else "missing",
            f"{f['requested']} of {need}",
        ),
        *gates(record, f["ci"], f["approvals"], f["pr"]),
    ]
    for key, label, by in (
        ("backup", "Production backup created", "deploy's create_backup"),
        ("deployed", "Production verified", "deploy's post_deployment_verification"),
        ("develop", "Merged to develop", "merge_back_to_develop"),
        ("post-mortem", "Post-mortem scheduled", "open_post_mortem"),
    ):
        items.append(Item(key, "deployment", label, release.LATER, f"done by hotfix.finish ({by})"))
    return items


# -- finish ------------------------------------------------------------------------------------
@step(offline=True)
def validate_finish(ctx: Context) -> str:
    root = release._root(ctx)
    release.require_clean(root)
    release._gh(ctx)
    app_repo.fetch(root)
    branch, record = find_hotfix(root, ctx.options.get("ticket"))
    tag = release.tag_name(record["version"])
    ctx.version = tag
    ctx.facts.update(
        record=record,
        branch=branch,
        tag=tag,
        version=record["version"],
        tag_message=f"Hotfix: {record['description']}",
        deploy_message=f"hotfix {record['ticket']} {tag}",
    )
    release.confirm_production(ctx, "HOTFIX")
    return f"open hotfix {record['ticket']} ({branch}), {tag}"


@step(offline=True)
def hotfix_gates(ctx: Context) -> str:
    record = ctx.facts["record"]
    f = gather(ctx, ctx.facts["branch"], record)
    ctx.facts["head"] = f["head"]
    section = release.section_of(
        app_repo.show(release._root(ctx), f["head"], "CHANGELOG.md") or "", record["version"]
    )
    ctx.facts["section"] = section or f"- {record['ticket']}: {record['description']}"
    missing = [i for i in gates(record, f["ci"], f["approvals"], f["pr"]) if i.state != OK]
    if missing:
        parts = "; ".join(f"{i.label} ({i.evidence})" for i in missing)
        raise BadInput(
            f"hotfix {record['ticket']} is not ready, nothing was changed: {parts}; "
            "see `invoke hotfix.status`"
        )
    return f"CI passing; {approvals_needed(record['category'])} approval(s) present"


@step()
def open_post_mortem(ctx: Context) -> str:
    record = ctx.facts["record"]
    if ctx.dry_run:
        release._did(ctx, f"incident: post-mortem of {record['ticket']} due in 24 h")
        return "would open the post-mortem"
    for r in incident.list_all(ctx.primary, ctx.settings):
        if r.get("hotfix", {}).get("ticket") == record["ticket"]:
            ctx.facts["post_mortem"] = r
            return f"post-mortem {r['id']} already open (due {r.get('post_mortem_due')})"
    now = _now(ctx)
    c = clock(record, now, ctx.options["team"])
    doc = post_mortem(record, now, ctx.env, actor(), c.report())
    doc = incident.create(ctx.primary, ctx.settings, doc)
    ctx.facts["post_mortem"] = doc
    return f"post-mortem {doc['id']} opened, due {doc['post_mortem_due']}"


@step()
def report_sla(ctx: Context) -> str:
    record = ctx.facts["record"]
    c = clock(record, _now(ctx), ctx.options["team"])
    ctx.facts["sla"] = {**asdict(c), "report": c.report()} if not ctx.dry_run else {}
    if ctx.dry_run:
        return f"would report time to production ({c.line()})"
    line = c.report()
    payload = notify.slack_payload(
        notify.Fields(
            f"Hotfix {record['ticket']} {release.tag_name(record['version'])} in production",
            {"Ticket": record["ticket"], "Category": record["category"]},
            True,
            line,
        )
    )
    delivery = notify.post_kind("deploy", ctx.settings.secret("slack_webhook_env"), payload)
    return f"{line} ({delivery.detail})"


FINISH = (
    validate_finish,
    hotfix_gates,
    release.merge_to_main,
    release.tag_release,
    release.wait_for_images,
    release.deploy_production,
    release.merge_back_to_develop,
    release.publish_release,
    open_post_mortem,
    report_sla,
    release.close_release_branch,
)
