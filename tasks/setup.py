"""`invoke setup`: an environment's bare hosts to what deploy needs (deploys/server.py)."""

from invoke import task

from cerniq_ops import settings
from cerniq_ops.output import say
from cerniq_ops.procedure import Context
from cerniq_ops.setup import setup as run_setup
from tasks._cli import cli, progress_for, run_procedure


@task(
    name="setup",
    help={
        "env": "staging or production",
        "dry_run": "list each host's planned changes (pyinfra plans them); change nothing",
        "json": "print a JSON summary on stdout (progress goes to stderr)",
    },
)
@cli
def setup(c, env, dry_run=False, json=False):
    """Provision ENV's hosts as root (setting setup_user): docker and compose on app hosts,
    the deploy user and its key, Traefik's files and Traefik running; PostgreSQL (the app's
    role, database, pg_hba), Redis, backup_dir and the sudo rule on the db host. Then doctor's
    checks as the deploy user. A second run changes nothing."""
    ctx = Context(settings.load(env), "setup", dry_run=dry_run, progress=progress_for(json))
    report = run_procedure(run_setup, ctx, json)
    if not json:
        changes = ctx.facts.get("changes", 0)
        if dry_run:
            say(f"== dry run complete: {changes} planned change(s) on {env}; nothing changed")
        else:
            say(f"== setup complete: {env}, {changes} change(s)")
    return report
