"""`invoke review.*`: code review rules (seed 4.1, 4.2, 15.1) and the feature checklist (3.3)."""

from dataclasses import asdict

from invoke import task
from invoke.exceptions import Exit

from cerniq_ops import app_repo, business, notify, review, team
from cerniq_ops import feature as feature_rules
from cerniq_ops.clients import github
from cerniq_ops.errors import BadInput
from cerniq_ops.output import emit_json, say, table
from tasks._cli import cli

REPO = "the app repository checkout (default: team.yml app_repo)"


@task(help={"repo": REPO})
@cli
def codeowners(c, repo=None):
    """Write .github/CODEOWNERS and the PR template from team.yml; unchanged files stay."""
    t = team.load()
    root = app_repo.repo_dir(repo, t.get("app_repo"))
    for path, text in review.repo_files(t).items():
        say(f"{'wrote' if app_repo.write_if_changed(root, path, text) else 'unchanged'} {path}")


def _pr_number(pr) -> int:
    text = str(pr).lstrip("#")
    if not text.isdigit() or int(text) < 1:
        raise BadInput(f"invalid PR {pr!r}: expected its number, e.g. 42")
    return int(text)


@task(help={"pr": "the pull request number", "repo": REPO, "json": "print the items as JSON"})
@cli
def feature(c, pr, repo=None, json=False):
    """The PR's feature development checklist (seed 3.3), each item judged from git and GitHub
    with its evidence; exit 1 naming what is missing."""
    number, t, out = _pr_number(pr), team.load(), team.outside()
    root = app_repo.repo_dir(repo, t.get("app_repo"))
    token = out.token()
    api, name = out.github_api, out.github_repo
    pull = github.pull(api, name, number, token)
    reviews = github.pull_reviews(api, name, number, token)
    ci = github.commit_checks(api, name, pull["head"]["sha"], token)
    items = feature_rules.checklist(feature_rules.gather(root, t, pull, reviews, ci), t)
    missing = [i for i in items if not i.ok]
    if json:
        emit_json({"pr": number, "ok": not missing, "items": [asdict(i) for i in items]})
    else:
        say(f"PR #{number}: {pull.get('title', '')} ({pull['head']['ref']})")
        say(
            table(
                ("group", "item", "state", "evidence"),
                [(i.group, i.label, "ok" if i.ok else "MISSING", i.evidence) for i in items],
            )
        )
        say(f"{len(missing)} item(s) missing" if missing else "feature checklist complete")
    if missing:
        raise Exit(code=1)


@task(
    help={
        "pr": "the pull request number",
        "status": "also set the commit status (team.yml review.status_context) on the PR's head",
        "json": "print the verdict as JSON",
    }
)
@cli
def check(c, pr, status=False, json=False):
    """The PR's changed files against the review rules; exit 1 naming what is missing."""
    number, t, out = _pr_number(pr), team.load(), team.outside()
    token = out.token()
    api, repo = out.github_api, out.github_repo
    pull = github.pull(api, repo, number, token)
    files = github.pull_files(api, repo, number, token)
    reviews = github.pull_reviews(api, repo, number, token)
    verdict = review.evaluate(t, files, reviews, pull["user"]["login"])
    if status:
        github.set_status(
            api,
            repo,
            pull["head"]["sha"],
            token,
            "success" if verdict.ok else "failure",
            t["review"].get("status_context", "cerniq/review-rules"),
            verdict.summary(),
        )
    if json:
        emit_json(
            {
                "pr": number,
                "ok": verdict.ok,
                "missing": verdict.missing,
                "approved_by": verdict.approved_by,
                "approvals_needed": verdict.requirement.approvals,
                "required_reviewers": verdict.requirement.reviewers,
            }
        )
    elif verdict.ok:
        say(f"PR #{number}: {verdict.summary()}")
    else:
        say(f"PR #{number}: review rules not met")
        for line in verdict.missing:
            say(f"  missing: {line}")
    if not verdict.ok:
        raise Exit(code=1)


@task(
    help={
        "now": "the clock (ISO 8601; default: now), for time travel in tests and replays",
        "dry_run": "print the nudges due; post nothing, record nothing",
        "json": "print the nudges as JSON",
    }
)
@cli
def nudge(c, now=None, dry_run=False, json=False):
    """Remind/escalate open PRs waiting for a first or follow-up review past the SLA (business
    hours); each level is posted once per PR (state in team.yml review.nudge_state)."""
    t, out = team.load(), team.outside()
    at = business.parse_at(now, t["business"]["time_zone"])
    token = out.token()
    api, repo = out.github_api, out.github_repo
    pulls = [
        (p, github.pull_reviews(api, repo, p["number"], token))
        for p in github.open_pulls(api, repo, token)
    ]
    pushed = {
        p["number"]: github.commit_date(api, repo, p["head"]["sha"], token)
        for p, reviews in pulls
        if review.waiting_for_follow_up(p, reviews)
    }
    state_path = team.project_path(t["review"]["nudge_state"])
    state = review.load_state(state_path)
    due = review.nudges(t, repo, pulls, at, state, pushed)
    results = []
    for n in due:
        if dry_run:
            results.append(
                {"pr": n.number, "level": n.level.label, "text": n.text, "posted": False}
            )
            continue
        payload = notify.slack_payload(
            notify.Fields(
                f"Review SLA: PR #{n.number} ({n.level.action})",
                {
                    "PR": f"#{n.number}",
                    "Waiting": review.hours_text(n.waited),
                    "Level": n.level.label,
                },
                False,
                n.text,
            )
        )
        delivery = notify.post_kind("review_nudge", out.default_webhook(), payload, t)
        if delivery.sent:  # recorded only once posted: a failed post is retried next run
            state = review.mark_posted(state, n)
            review.save_state(state_path, state)
        results.append(
            {
                "pr": n.number,
                "level": n.level.label,
                "text": n.text,
                "posted": delivery.sent,
                "detail": delivery.detail,
            }
        )
    if json:
        emit_json({"at": at.isoformat(), "nudges": results})
        return
    for r in results:
        say(f"PR #{r['pr']} [{r['level']}]: {r['text']}  -> {r.get('detail', 'dry run')}")
    say(f"{len(results)} nudge(s) due at {at.isoformat()}; {len(pulls)} open PR(s) checked")
