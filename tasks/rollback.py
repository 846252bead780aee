"""`invoke rollback` and `invoke rollback.check`: seed 9 (rollback procedure, decision matrix)."""

from invoke import task

from cerniq_ops import rollback as procedure
from cerniq_ops import settings
from cerniq_ops.deploy_inputs import number
from cerniq_ops.output import emit_json, say
from cerniq_ops.procedure import Context
from tasks._cli import cli, progress_for, run_procedure


@task(
    default=True,
    help={
        "env": "staging or production",
        "to": "the version to go back to, e.g. v1.4.2 (must be in the registry)",
        "previous": "go back to the version deployed before the current one",
        "confirm": "the typed confirmation when not interactive: 'ROLLBACK'",
        "db_rollback": "also undo migrations applied after the target (a backup is taken first)",
        "severity": "incident severity P1..P4 (default P2)",
        "reason": "why: the incident's title",
        "dry_run": "show what would happen; change nothing",
        "json": "print a JSON summary on stdout",
        "lock_wait": "seconds to wait for a held deploy lock (default 0: fail at once)",
        "skip_hooks": "do not run the project's hooks (hooks/pre-*, post-*, on-failure)",
    },
)
@cli
def rollback(
    c,
    env,
    to=None,
    previous=False,
    confirm=None,
    db_rollback=False,
    severity="P2",
    reason="",
    dry_run=False,
    json=False,
    lock_wait=None,
    skip_hooks=False,
):
    """Roll ENV back to --to VERSION or --previous, with an incident record (seed 9.2)."""
    ctx = Context(
        settings.load(env),
        "rollback",
        version=to,
        dry_run=dry_run,
        message=reason,
        options={
            "previous": previous,
            "confirm": confirm,
            "db_rollback": db_rollback,
            "severity": severity,
            "reason": reason,
            "skip_hooks": skip_hooks,
        },
        progress=progress_for(json),
        lock_wait=number("lock-wait", lock_wait),
    )
    run_procedure(procedure.rollback, ctx, json)
    if not json:
        record = ctx.facts.get("incident") or {}
        what = "dry run" if dry_run else "nothing to roll back"
        say(f"== rollback complete: {env} runs {ctx.version} ({record.get('id', what)})")


@task(
    help={
        "env": "staging or production",
        "window": "seconds of live traffic to measure (default 10)",
        "json": "print JSON",
    }
)
@cli
def check(c, env, window=None, json=False):
    """Evaluate the rollback decision matrix (seed 9.1) from live Traefik metrics and health."""
    from cerniq_ops import hosts

    window = number("window", window, minimum=1, default=10)
    s = settings.load(env)
    with hosts.session(s) as state:
        ctx = Context(s, "rollback.check", state=state, locking=False)
        decision = procedure.check(ctx, window)
    if json:
        emit_json(
            {
                "env": env,
                "category": decision.category,
                "rule": decision.rule,
                "figures": decision.figures,
            }
        )
        return
    say(f"{env}: {decision.category.upper()}: {decision.rule}")
    for key, value in decision.figures.items():
        say(f"  {key:14} {value}")
