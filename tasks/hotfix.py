"""`invoke hotfix.*`: hotfixes (seed 8.1, 8.2, 8.3) on the app repository (team.yml app_repo)."""

from dataclasses import asdict
from datetime import UTC

from invoke import task

from cerniq_ops import business, hotfix, release
from cerniq_ops.deploy_inputs import number
from cerniq_ops.output import emit_json, say, table
from cerniq_ops.procedure import run
from tasks._cli import cli, run_procedure
from tasks.release import REPO, _context

NOW = "the clock (ISO 8601; default: now), for replays and tests"
TICKET = "the hotfix's ticket, e.g. CERN-123 (default: the only hotfix/* branch on origin)"


def _at(ctx, now):
    t = ctx.options["team"]
    ctx.options["now"] = business.parse_at(now, t["business"]["time_zone"]).astimezone(UTC)


@task(
    help={
        "ticket": "the hotfix ticket, e.g. CERN-123",
        "category": f"seed 8.1: {', '.join(hotfix.CATEGORIES)}",
        "description": "what is broken (names the branch: hotfix/CERN-123-<slug>)",
        "repo": REPO,
        "now": NOW,
        "dry_run": "list every git, GitHub and Slack action; change nothing",
        "json": "print the report as JSON (progress on stderr)",
    }
)
@cli
def start(c, ticket, category, description="", repo=None, now=None, dry_run=False, json=False):
    """Branch hotfix/CERN-123-<slug> from main, bump the patch version, record the category and
    start the SLA clock (seed 8.1), push, open the PR to main, notify the team."""
    ctx = _context(
        "hotfix.start",
        repo,
        json,
        dry_run,
        ticket=ticket,
        category=category,
        description=description,
    )
    _at(ctx, now)
    run_procedure(lambda x: run(hotfix.START, x), ctx, json)
    if not json:
        record = ctx.facts["record"]
        cat = hotfix.category(record["category"])
        c_ = hotfix.clock(record, ctx.options["now"], ctx.options["team"])
        done = "dry run: nothing changed" if dry_run else "hotfix started"
        say(f"== {done}: {record['ticket']} {ctx.version} ({cat.priority}); {c_.line()}")


@task(help={"ticket": TICKET, "repo": REPO, "now": NOW, "json": "print JSON"})
@cli
def status(c, ticket=None, repo=None, now=None, json=False):
    """The hotfix checklist (seed 8.3) of the open hotfix and the SLA time left (seed 8.1)."""
    ctx = _context("hotfix.status", repo, json)
    _at(ctx, now)
    root = ctx.options["root"]
    from cerniq_ops import app_repo

    app_repo.fetch(root)
    branch, record = hotfix.find_hotfix(root, ticket)
    facts = hotfix.gather(ctx, branch, record)
    items = hotfix.checklist(record, facts, ctx.options["team"])
    sla = hotfix.clock(record, ctx.options["now"], ctx.options["team"])
    if json:
        emit_json(
            {
                "ticket": record["ticket"],
                "branch": branch,
                "version": release.tag_name(record["version"]),
                "record": record,
                "sla": {
                    "line": sla.line(),
                    "fix_left_seconds": sla.fix_left.total_seconds(),
                    "deploy_left_seconds": sla.deploy_left.total_seconds(),
                },
                "items": [asdict(i) for i in items],
            }
        )
        return
    say(f"hotfix {record['ticket']} ({branch}, {release.tag_name(record['version'])})")
    say(f"SLA {sla.line()}")
    say(
        table(
            ("group", "item", "state", "evidence"),
            [(i.group, i.label, i.state, i.evidence) for i in items],
        )
    )


@task(
    help={
        "ticket": TICKET,
        "repo": REPO,
        "confirm": "the typed confirmation when not interactive: 'DEPLOY PRODUCTION'",
        "image_wait": "seconds to wait for the tag's images in the registry (default 1800)",
        "lock_wait": "seconds to wait for a held deploy lock (default 0)",
        "now": NOW,
        "dry_run": "list every git, GitHub and deploy action; change nothing, connect nowhere",
        "json": "print the report as JSON (progress on stderr)",
    }
)
@cli
def finish(
    c,
    ticket=None,
    repo=None,
    confirm=None,
    image_wait=None,
    lock_wait=None,
    now=None,
    dry_run=False,
    json=False,
):
    """Needs CI passing and 1 approval (2 for security); then merge to main, tag the patch,
    deploy production (backup first), merge main into develop, open the post-mortem (due in
    24 h) and report the time to production against the SLA. Re-run continues after a failure."""
    ctx = _context(
        "hotfix.finish",
        repo,
        json,
        dry_run,
        ticket=ticket,
        confirm=confirm,
        image_wait=number("image-wait", image_wait, minimum=1, default=1800),
    )
    ctx.locking = True  # the deploy lock from the first git step to the end
    ctx.lock_wait = number("lock-wait", lock_wait)
    if now is not None:
        _at(ctx, now)
    steps = release.offline(hotfix.FINISH) if dry_run else hotfix.FINISH
    run_procedure(lambda x: run(steps, x, on_failure=(release.notify_failure,)), ctx, json)
    if not json:
        sla = ctx.facts.get("sla", {}).get("report", "")
        done = "dry run complete: nothing changed" if dry_run else "hotfix finished"
        say(f"== {done}: {ctx.version}{f'; {sla}' if sla else ''}")
