"""`invoke release.*`: releases (seed 6.2, 6.3, 13.2) on the app repository (team.yml app_repo)."""

from dataclasses import asdict

from invoke import task

from cerniq_ops import app_repo, release, settings, team
from cerniq_ops.deploy_inputs import number
from cerniq_ops.output import emit_json, say, table
from cerniq_ops.procedure import Context, run
from tasks._cli import cli, progress_for, run_procedure

REPO = "the app repository checkout (default: team.yml app_repo)"
VERSION = "the open release, e.g. v1.5.0 (default: the only release/* branch on origin)"


def _context(procedure, repo, json, dry_run=False, **options) -> Context:
    t = team.load()
    root = app_repo.repo_dir(repo, t.get("app_repo"))
    return Context(
        settings.load("production"),
        procedure,
        dry_run=dry_run,
        options={"root": root, "team": t, **options},
        progress=progress_for(json),
        locking=False,
    )


@task(
    help={
        "bump": "major, minor or patch (as `npm version`)",
        "repo": REPO,
        "dry_run": "list every git and GitHub action; change nothing",
        "json": "print the report as JSON (progress on stderr)",
    }
)
@cli
def start(c, bump, repo=None, dry_run=False, json=False):
    """Branch release/vX.Y.Z from develop, bump the version, write the CHANGELOG section, push,
    open the release PR to main asking the tech lead and QA lead (seed 6.2, T-3)."""
    ctx = _context("release.start", repo, json, dry_run, bump=bump)
    run_procedure(lambda x: run(release.START, x), ctx, json)
    if not json:
        pr = ctx.facts.get("pr")
        where = f"; PR #{pr['number']} {pr['url']}" if pr else ""
        done = "dry run: nothing changed" if dry_run else "release started"
        say(f"== {done}: {ctx.version} ({release.branch_name(ctx.facts['version'])}){where}")


@task(help={"version": VERSION, "repo": REPO, "json": "print the checklist as JSON"})
@cli
def status(c, version=None, repo=None, json=False):
    """The release checklist (seed 6.3) of the open release: each item's state and evidence."""
    ctx = _context("release.status", repo, json)
    root = ctx.options["root"]
    app_repo.fetch(root)
    v = release.find_release(root, version)
    facts = release.gather(ctx, v)
    items = release.checklist(facts)
    missing = release.missing_gates(items)
    if json:
        emit_json(
            {
                "version": release.tag_name(v),
                "branch": facts.branch,
                "head": facts.head,
                "pr": facts.pr,
                "ready": not missing,
                "items": [asdict(i) | {"gate": i.gate} for i in items],
            }
        )
        return
    say(f"release {release.tag_name(v)} ({facts.branch} at {facts.head[:10]})")
    rows = [(i.group, i.label, i.state, i.evidence) for i in items]
    say(table(("group", "item", "state", "evidence"), rows))
    if missing:
        say(f"not ready: {len(missing)} pre-release/approval item(s) missing")
    else:
        say("ready: `invoke release.finish`")


@task(
    help={
        "item": f"one of: {', '.join(release.SIGNOFF_ITEMS)}",
        "by": "who signs off (a name from team.yml people)",
        "note": "what was checked, or where it is written (required for rollback-plan)",
        "version": VERSION,
        "repo": REPO,
    }
)
@cli
def signoff(c, item, by, note="", version=None, repo=None):
    """Record a manual checklist item as signed off by a named person (committed and pushed on
    the release branch: every run and every clone sees it)."""
    ctx = _context("release.signoff", repo, False, version=version)
    say(release.signoff(ctx, item, by, note))


@task(
    help={
        "version": VERSION,
        "repo": REPO,
        "confirm": "the typed confirmation when not interactive: 'DEPLOY PRODUCTION'",
        "image_wait": "seconds to wait for the tag's images in the registry (default 1800)",
        "lock_wait": "seconds to wait for a held deploy lock (default 0)",
        "dry_run": "list every git, GitHub and deploy action; change nothing, connect nowhere",
        "json": "print the report as JSON (progress on stderr)",
    }
)
@cli
def finish(
    c,
    version=None,
    repo=None,
    confirm=None,
    image_wait=None,
    lock_wait=None,
    dry_run=False,
    json=False,
):
    """Release day (seed 6.2): refuse naming every missing checklist item; else merge to main,
    tag, wait for the images, deploy production, merge back to develop, publish the GitHub
    release, announce. Re-run after a failure: it continues where it stopped."""
    ctx = _context(
        "release.finish",
        repo,
        json,
        dry_run,
        version=version,
        confirm=confirm,
        image_wait=number("image-wait", image_wait, minimum=1, default=1800),
    )
    ctx.locking = True  # the deploy lock from the first git step to the end
    ctx.lock_wait = number("lock-wait", lock_wait)
    steps = release.offline(release.FINISH) if dry_run else release.FINISH
    run_procedure(lambda x: run(steps, x, on_failure=(release.notify_failure,)), ctx, json)
    if not json:
        done = "dry run complete: nothing changed" if dry_run else "release finished"
        say(f"== {done}: {ctx.version}")
