"""`invoke bluegreen.*`: blue-green rollouts switched by Traefik (seed 7.3), canary, switch back."""

from invoke import task

from cerniq_ops import bluegreen, settings
from cerniq_ops.deploy_inputs import number
from cerniq_ops.output import emit_json, say, table
from cerniq_ops.procedure import Context
from tasks._cli import cli, progress_for, run_procedure

CONFIRM = "the typed confirmation when not interactive: 'DEPLOY PRODUCTION'"
DRY_RUN = "show the steps and planned changes; change nothing"
DIFF = "with --dry-run: each host's config diffs (env files: keys only), active.yml's too"
JSON = "print a JSON summary on stdout (progress goes to stderr)"
MESSAGE = "a note shown in the lock, the audit log and the announcement"
ANALYSIS = "seconds to watch the new color after the full switch (default: setting; 0 = off)"
LOCK_WAIT = "seconds to wait for a held deploy lock (CI queues; default 0: fail at once)"
SKIP_HOOKS = "do not run the project's hooks (hooks/pre-*, post-*, on-failure)"


def _run(procedure, name, env, version, json, dry_run, message, lock_wait=None, **options):
    ctx = Context(
        settings.load(env),
        name,
        version=version,
        dry_run=dry_run,
        message=message,
        options={k: v for k, v in options.items() if v is not None},
        progress=progress_for(json),
        lock_wait=number("lock-wait", lock_wait),
    )
    report = run_procedure(lambda c: bluegreen.run_procedure(procedure, c), ctx, json)
    if not json:
        facts = ctx.facts
        if dry_run:
            say("== dry run complete: nothing changed")
        elif facts.get("converged"):
            say(f"== nothing to change: {facts.get('active')} already serves {ctx.version}")
        else:
            say(f"== {env}: {facts['idle']} ({ctx.version}) serves {ctx.settings.public_url}")
            if facts.get("active") and facts["active"] != facts["idle"]:
                say(f"   {bluegreen.stop_hint(ctx.settings, facts['active'])}")
    return report


@task(
    help={
        "env": "staging or production",
        "version": "image tag for the idle color, e.g. v1.4.2 (default: the newest published)",
        "initial": "first blue-green rollout of ENV (no active-env marker yet): starts on blue",
        "analysis_seconds": ANALYSIS,
        "confirm": CONFIRM,
        "dry_run": DRY_RUN,
        "diff": DIFF,
        "message": MESSAGE,
        "json": JSON,
        "lock_wait": LOCK_WAIT,
        "skip_hooks": SKIP_HOOKS,
    }
)
@cli
def deploy(
    c,
    env,
    version=None,
    initial=False,
    analysis_seconds=None,
    confirm=None,
    dry_run=False,
    diff=False,
    message="",
    json=False,
    lock_wait=None,
    skip_hooks=False,
):
    """Deploy VERSION to the idle color, check it, switch Traefik to it (switch back on failure)."""
    return _run(
        bluegreen.DEPLOY,
        "bluegreen.deploy",
        env,
        version,
        json,
        dry_run,
        message,
        lock_wait,
        skip_hooks=skip_hooks,
        initial=initial,
        confirm=confirm,
        analysis_seconds=analysis_seconds,
        diff=diff,
    )


@task(
    help={
        "env": "staging or production",
        "to": "blue or green (default: the idle color); also settles a bad or split marker",
        "analysis_seconds": ANALYSIS,
        "confirm": CONFIRM,
        "dry_run": DRY_RUN,
        "message": MESSAGE,
        "json": JSON,
        "lock_wait": LOCK_WAIT,
        "skip_hooks": SKIP_HOOKS,
    }
)
@cli
def switch(
    c,
    env,
    to=None,
    analysis_seconds=None,
    confirm=None,
    dry_run=False,
    message="",
    json=False,
    lock_wait=None,
    skip_hooks=False,
):
    """Switch ENV's traffic to the other color, only if it is healthy (switch back on failure)."""
    return _run(
        bluegreen.SWITCH,
        "bluegreen.switch",
        env,
        None,
        json,
        dry_run,
        message,
        lock_wait,
        skip_hooks=skip_hooks,
        to=to,
        confirm=confirm,
        analysis_seconds=analysis_seconds,
    )


@task(
    help={
        "env": "staging or production",
        "version": "deploy this tag to the idle color first (default: the idle color as it runs)",
        "steps": "percent of traffic to the new color per step, e.g. 10,50,100 (default: setting)",
        "pause": "seconds of analysis between steps (default: setting, 60)",
        "analysis_seconds": ANALYSIS,
        "confirm": CONFIRM,
        "dry_run": DRY_RUN,
        "message": MESSAGE,
        "json": JSON,
        "lock_wait": LOCK_WAIT,
        "skip_hooks": SKIP_HOOKS,
    }
)
@cli
def canary(
    c,
    env,
    version=None,
    steps=None,
    pause=None,
    analysis_seconds=None,
    confirm=None,
    dry_run=False,
    message="",
    json=False,
    lock_wait=None,
    skip_hooks=False,
):
    """Move traffic to the idle color step by step; a failed analysis puts it back to 0%."""
    return _run(
        bluegreen.CANARY if version else bluegreen.CANARY_IDLE,
        "bluegreen.canary",
        env,
        version,
        json,
        dry_run,
        message,
        lock_wait,
        skip_hooks=skip_hooks,
        steps=steps,
        pause=pause,
        confirm=confirm,
        analysis_seconds=analysis_seconds,
    )


@task(
    name="stop-idle",
    help={
        "env": "staging or production",
        "delay": "only when the last switch is this many seconds old (default: setting, 600)",
        "confirm": CONFIRM,
        "dry_run": DRY_RUN,
        "json": JSON,
    },
)
@cli
def stop_idle(c, env, delay=None, confirm=None, dry_run=False, json=False):
    """Stop the idle color's containers (after the scale-down delay since the last switch)."""
    ctx = Context(
        settings.load(env),
        "bluegreen.stop-idle",
        dry_run=dry_run,
        options={k: v for k, v in (("confirm", confirm), ("delay", delay)) if v is not None},
        progress=progress_for(json),
    )
    report = run_procedure(lambda c: bluegreen.run_procedure(bluegreen.STOP_IDLE, c), ctx, json)
    if not json and not dry_run:
        say(f"== {ctx.facts['idle']} stopped on {env}; {ctx.facts['active']} serves")
    return report


@task(help={"env": "staging or production", "json": "print JSON"})
@cli
def status(c, env, json=False):
    """Show the active color, each color's version and health, and what Traefik routes."""
    rows = bluegreen.status(settings.load(env))
    if json:
        emit_json(rows)
        return
    lines = []
    for row in rows:
        for color, info in row["colors"].items():
            lines.append(
                (
                    row["host"],
                    color + (" (active)" if row["active"] == color else ""),
                    info["version"] or "-",
                    "healthy" if info["healthy"] else "NOT healthy",
                    info["port"],
                    row["traefik_routes"],
                    row["switched_at"] or "-",
                )
            )
    say(table(("host", "color", "version", "health", "port", "traefik routes", "since"), lines))
    for row in rows:
        if row["unfinished"]:
            say(f"{row['host']}: unfinished run {row['unfinished']} (the next run settles it)")
