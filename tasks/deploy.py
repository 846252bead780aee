"""`invoke deploy` and `invoke history`: the seed's deployment procedure (7.2) and its record."""

from invoke import task

from cerniq_ops import audit, hosts, rollback, settings
from cerniq_ops.deploy import deploy as run_deploy
from cerniq_ops.deploy_inputs import number
from cerniq_ops.output import emit_json, say, table
from cerniq_ops.procedure import Context
from tasks._cli import cli, progress_for, run_procedure


@task(
    name="deploy",
    help={
        "env": "staging or production",
        "version": "image tag to deploy, e.g. v1.4.2 (default: the newest published)",
        "confirm": "the typed confirmation when not interactive: 'DEPLOY PRODUCTION'",
        "dry_run": "show the steps and pyinfra's planned changes; change nothing",
        "diff": "with --dry-run: each host's config diffs (the env file: keys only)",
        "batch": "hosts per wave: 1, 2 or 50%% (default: all app hosts in one wave)",
        "skip_ci_check": "deploy without a green CI run (recorded in the audit log)",
        "reason": "why the CI check is skipped (recorded)",
        "message": "a note shown in the lock, the audit log and the announcement",
        "json": "print a JSON summary on stdout (progress goes to stderr)",
        "auto_rollback": "watch live figures after the deploy; roll back on 'immediate'",
        "watch": "seconds to watch with --auto-rollback (default 60)",
        "lock_wait": "seconds to wait for a held deploy lock (CI queues; default 0: fail at once)",
        "skip_hooks": "do not run the project's hooks (hooks/pre-*, post-*, on-failure)",
    },
)
@cli
def deploy(
    c,
    env,
    version=None,
    confirm=None,
    dry_run=False,
    diff=False,
    batch=None,
    skip_ci_check=False,
    reason="",
    message="",
    json=False,
    auto_rollback=False,
    watch=None,
    lock_wait=None,
    skip_hooks=False,
):
    """Deploy VERSION to ENV with a zero-downtime rolling replace (seed 7.2)."""
    watch = number("watch", watch, minimum=1, default=60)
    ctx = Context(
        settings.load(env),
        "deploy",
        version=version,
        dry_run=dry_run,
        message=message,
        options={
            "confirm": confirm,
            "batch": batch,
            "diff": diff,
            "skip_ci_check": skip_ci_check,
            "reason": reason,
            "skip_hooks": skip_hooks,
        },
        progress=progress_for(json),
        lock_wait=number("lock-wait", lock_wait),
    )
    report = run_procedure(run_deploy, ctx, json)
    if auto_rollback and not dry_run:
        say(rollback.guard(ctx.settings, watch, ctx.progress), err=json)
    if not json:
        done = "dry run complete: nothing changed" if dry_run else "deployment complete"
        say(f"== {done}: {env} {ctx.version} ({ctx.settings.public_url})")
    return report


@task(
    help={
        "env": "staging or production",
        "limit": "how many records (default 20)",
        "json": "print JSON",
    }
)
@cli
def history(c, env, limit=None, json=False):
    """Show the audit log of ENV: who changed what, when, with which result."""
    limit = number("limit", limit, kind=int, minimum=1, default=20)
    s = settings.load(env)
    with hosts.session(s, [s.primary_host]) as state:
        records = audit.read(state.inventory.get_host(s.primary_host.name), s, limit)
    if json:
        emit_json(records)
        return
    rows = [
        (
            r.get("at"),
            r.get("who"),
            r.get("procedure"),
            r.get("version") or "-",
            r.get("step"),
            r.get("result"),
            (r.get("detail") or "")[:60],
        )
        for r in records
    ]
    say(table(("at", "who", "procedure", "version", "step", "result", "detail"), rows))
