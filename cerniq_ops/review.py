"""Code review rules (seed 4.1, 4.2, 15.1): CODEOWNERS and the PR template from team.yml, a PR's
approvals against the rules, and SLA nudges escalated once per level.

Everything here is pure (text in, text or verdicts out) except `load_state`/`save_state`; the
GitHub calls live in cerniq_ops/clients/github.py and the tasks in tasks/review.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cerniq_ops import business, team
from cerniq_ops.clock import parse_iso

CODEOWNERS_PATH = ".github/CODEOWNERS"
PR_TEMPLATE_PATH = ".github/pull_request_template.md"


# -- paths ------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """CODEOWNERS-style glob anchored at the repo root: `**` spans folders, `*` does not."""
    p = pattern.lstrip("/")
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(f"^{out}$")


def matches(pattern: str, path: str) -> bool:
    return bool(_glob_regex(pattern).match(path.lstrip("/")))


def _literal_prefix(pattern: str) -> str:
    return re.split(r"[*?]", pattern, maxsplit=1)[0]


# -- CODEOWNERS and the PR template ----------------------------------------------------------
def _owner(t: dict, handle: str) -> list[str]:
    return [f"@{team.github_login(t, p)}" for p in team.members(t, handle)]


def codeowners_text(t: dict) -> str:
    """.github/CODEOWNERS: team rules first, critical paths after (the last match wins, so a
    critical path keeps its path's teams and adds its required reviewers)."""
    org = t.get("github", {}).get("org", "cerniq")
    rules = t["review"]["rules"]
    lines = [
        "# Written by `invoke review.codeowners` from cerniq-ops team.yml (seed 4.1); do not edit:",
        "# change team.yml and re-run. The last matching pattern takes precedence.",
        "",
        "# Paths -> teams",
    ]
    for rule in rules:
        lines.append(" ".join([rule["path"], *(f"@{org}/{x}" for x in rule["teams"])]))
    lines += ["", "# Critical paths -> required reviewers"]
    for crit in t["review"]["required_approvals"]["critical_paths"]:
        prefix = _literal_prefix(crit["path"])
        teams = [
            f"@{org}/{x}"
            for rule in rules
            if prefix and prefix.startswith(_literal_prefix(rule["path"]))
            for x in rule["teams"]
        ]
        people = [o for h in crit["required_reviewers"] for o in _owner(t, h)]
        lines.append(" ".join([crit["path"], *dict.fromkeys(teams + people)]))
    return "\n".join(lines) + "\n"


def pr_template_text(t: dict) -> str:
    return t["pr_template"].rstrip("\n") + "\n"


def repo_files(t: dict) -> dict[str, str]:
    """Relative path -> content of every file `review.codeowners` keeps in the app repo."""
    return {CODEOWNERS_PATH: codeowners_text(t), PR_TEMPLATE_PATH: pr_template_text(t)}


# -- a PR against the rules -------------------------------------------------------------------
@dataclass(frozen=True)
class Requirement:
    approvals: int
    reviewers: dict[str, list[str]]  # '@dba' -> the changed files that need it


def requirement(t: dict, files: list[str]) -> Requirement:
    rules = t["review"]["required_approvals"]
    approvals = int(rules["default"])
    reviewers: dict[str, list[str]] = {}
    for crit in rules["critical_paths"]:
        hit = [f for f in files if matches(crit["path"], f)]
        if hit:
            approvals = max(approvals, int(crit.get("approvals", approvals)))
            for handle in crit["required_reviewers"]:
                reviewers.setdefault(handle, []).extend(hit)
    return Requirement(approvals, reviewers)


def latest_states(reviews: list[dict], author: str) -> dict[str, str]:
    """login -> the latest deciding state (APPROVED / CHANGES_REQUESTED / DISMISSED) per
    reviewer, in submission order; comments do not change a decision; the author never counts."""
    states: dict[str, str] = {}
    for r in sorted(reviews, key=lambda r: (r.get("submitted_at") or "", r.get("id", 0))):
        login = (r.get("user") or {}).get("login")
        state = r.get("state")
        if login and login != author and state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            states[login] = state
    return states


@dataclass(frozen=True)
class Verdict:
    ok: bool
    missing: list[str]
    approved_by: list[str]
    requirement: Requirement

    def summary(self) -> str:
        if self.ok:
            return f"review rules met: {len(self.approved_by)} approval(s)"
        return "; ".join(self.missing)


def evaluate(t: dict, files: list[str], reviews: list[dict], author: str) -> Verdict:
    need = requirement(t, files)
    states = latest_states(reviews, author)
    approved = sorted(u for u, s in states.items() if s == "APPROVED")
    missing = []
    if len(approved) < need.approvals:
        by = f" ({', '.join(approved)})" if approved else ""
        missing.append(f"{need.approvals} approvals needed, {len(approved)} given{by}")
    for handle, hit in need.reviewers.items():
        logins = [team.github_login(t, p) for p in team.members(t, handle)]
        if not set(logins) & set(approved):
            shown = ", ".join(hit[:3]) + (f" and {len(hit) - 3} more" if len(hit) > 3 else "")
            missing.append(f"{shown} needs an approval from {handle} ({', '.join(logins)})")
    blocking = sorted(u for u, s in states.items() if s == "CHANGES_REQUESTED")
    if blocking:
        missing.append(f"changes requested by {', '.join(blocking)}")
    return Verdict(not missing, missing, approved, need)


# -- SLA nudges (seed 4.2) --------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    after: timedelta
    label: str
    action: str
    notify: list[str]


def levels(t: dict, which: str = "escalation") -> list[Level]:
    """The escalation levels (`escalation` for a first review, `follow_up_escalation`)."""
    day = business.day_hours(t)
    return sorted(
        (
            Level(
                team.duration(e["after"], day), e["after"], e["action"], list(e.get("notify", []))
            )
            for e in t["review"]["sla"].get(which, [])
        ),
        key=lambda lv: lv.after,
    )


@dataclass
class Nudge:
    key: str  # "<repo>#<number>"
    number: int
    title: str
    url: str
    waited: timedelta
    level: Level
    text: str
    covered: list[str] = field(default_factory=list)  # labels this nudge marks as posted


def waiting_for_first_review(pull: dict, reviews: list[dict]) -> bool:
    author = (pull.get("user") or {}).get("login")
    if pull.get("draft") or pull.get("state", "open") != "open":
        return False
    return not any((r.get("user") or {}).get("login") != author for r in reviews)


def hours_text(d: timedelta) -> str:
    h = d.total_seconds() / 3600
    return f"{h:.1f} business h" if h != int(h) else f"{int(h)} business h"


def waiting_for_follow_up(pull: dict, reviews: list[dict]) -> list[str]:
    """Reviewers whose latest decision requests changes on an older commit than the PR's head:
    the author pushed since, the follow-up review is awaited from them."""
    author = (pull.get("user") or {}).get("login")
    if pull.get("draft") or pull.get("state", "open") != "open":
        return []
    head = (pull.get("head") or {}).get("sha")
    latest: dict[str, dict] = {}
    for r in sorted(reviews, key=lambda r: (r.get("submitted_at") or "", r.get("id", 0))):
        login = (r.get("user") or {}).get("login")
        if login and login != author and r.get("state") in ("APPROVED", "CHANGES_REQUESTED"):
            latest[login] = r
    return sorted(
        u
        for u, r in latest.items()
        if r["state"] == "CHANGES_REQUESTED" and head and r.get("commit_id") != head
    )


def _slack(t: dict, login: str) -> str:
    by_login = {team.github_login(t, p): p for p in t["people"]}
    return t["people"][by_login[login]].get("slack", login) if login in by_login else login


def nudges(
    t: dict,
    repo: str,
    pulls: list[tuple[dict, list[dict]]],
    now: datetime,
    posted: dict[str, list[str]],
    pushed: dict[int, str] | None = None,
) -> list[Nudge]:
    """The nudges due at NOW: per PR waiting for a first review (since it was opened) or for a
    follow-up review (since its head commit, date in PUSHED by PR number), the highest level
    reached that was never posted (lower levels reached at the same time are marked covered).
    A follow-up's state key carries the head sha: every new push starts its own levels."""
    day = business.day_hours(t)
    result = []
    for pull, reviews in pulls:
        number, head = pull["number"], (pull.get("head") or {}).get("sha", "")
        follow = waiting_for_follow_up(pull, reviews)
        if waiting_for_first_review(pull, reviews):
            kind, key, since = "initial_review", f"{repo}#{number}", pull["created_at"]
            lv, what = levels(t), "a first review"
            asked = [_slack(t, r.get("login")) for r in pull.get("requested_reviewers", [])]
        elif follow and (pushed or {}).get(number):
            kind, key, since = "follow_up_review", f"{repo}#{number}@{head[:12]}", pushed[number]
            lv, what = levels(t, "follow_up_escalation"), "a follow-up review"
            asked = [_slack(t, login) for login in follow]
        else:
            continue
        sla = t["review"]["sla"][kind]
        waited = business.elapsed(t, parse_iso(since), now)
        reached = [x for x in lv if waited >= x.after]
        if not reached or reached[-1].label in posted.get(key, []):
            continue
        top = reached[-1]
        people = [t["people"][p].get("slack", p) for h in top.notify for p in team.members(t, h)]
        mention = people or asked
        past = (
            f" (past the {sla['max']} maximum)" if waited >= team.duration(sla["max"], day) else ""
        )
        text = (
            f'PR #{number} "{pull["title"]}" waits {hours_text(waited)} for {what}'
            f"{past}; target {sla['target']}. {top.action}"
            + (f": {' '.join(mention)}" if mention else "")
            + f" {pull.get('html_url', '')}".rstrip()
        )
        result.append(
            Nudge(
                key,
                number,
                pull["title"],
                pull.get("html_url", ""),
                waited,
                top,
                text,
                [x.label for x in reached],
            )
        )
    return result


def load_state(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError:
        return {}
    return {k: list(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_state(path: Path, state: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def mark_posted(state: dict[str, list[str]], nudge: Nudge) -> dict[str, list[str]]:
    done = list(dict.fromkeys([*state.get(nudge.key, []), *nudge.covered]))
    return {**state, nudge.key: done}
