"""`invoke prune`: old app containers and images off every app host (rollback's kept)."""

from invoke import task

from cerniq_ops import prune as procedure
from cerniq_ops import settings
from cerniq_ops.output import say
from cerniq_ops.procedure import Context
from tasks._cli import cli, progress_for, run_procedure


@task(
    name="prune",
    help={
        "env": "staging or production",
        "retain": f"keep the newest N app versions' images (default {procedure.DEFAULT_RETAIN})",
        "dry_run": "list what would be removed; remove nothing",
        "json": "print a JSON summary on stdout (progress goes to stderr)",
        "lock_wait": "seconds to wait for a held deploy lock (default 0: fail at once)",
    },
)
@cli
def prune(c, env, retain=None, dry_run=False, json=False, lock_wait=None):
    """Remove ENV's exited app containers and app images older than the newest N versions on
    each app host; never the running version or the previous one (a rollback needs it)."""
    from cerniq_ops.deploy_inputs import number

    ctx = Context(
        settings.load(env),
        "prune",
        dry_run=dry_run,
        options={"retain": retain},
        progress=progress_for(json),
        lock_wait=number("lock-wait", lock_wait),
    )
    report = run_procedure(procedure.prune, ctx, json)
    if not json:
        verb = "would remove" if dry_run else "removed"
        say(f"== prune {env}: {verb} {ctx.facts.get('pruned', 0)} container(s)/image(s)")
    return report
