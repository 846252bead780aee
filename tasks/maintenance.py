"""`invoke maintenance on|off`: the app's routes answer 503 with a maintenance page, or not."""

import os
import sys

from invoke import task

from cerniq_ops import maintenance as procedure
from cerniq_ops import settings
from cerniq_ops.errors import BadInput
from cerniq_ops.output import say
from cerniq_ops.procedure import Context
from tasks._cli import cli, progress_for, run_procedure


@task(
    name="maintenance",
    positional=["state"],
    help={
        "state": "on or off",
        "env": "staging or production",
        "message": "the page's text (default: a generic 'down for maintenance')",
        "retry_after": "seconds in the Retry-After header (default 300)",
        "confirm": "the typed confirmation when not interactive: 'DEPLOY PRODUCTION'",
        "json": "print a JSON summary on stdout (progress goes to stderr)",
        "lock_wait": "seconds to wait for a held deploy lock (default 0: fail at once)",
    },
)
@cli
def maintenance(
    c, state, env, message=None, retry_after=None, confirm=None, json=False, lock_wait=None
):
    """Put ENV's app behind a maintenance page (`on`: 503 + Retry-After for every route but
    /health, confirmed through Traefik on each app host) or take it away (`off`)."""
    from cerniq_ops.deploy_inputs import number

    if state in ("-h", "--help"):  # invoke fills the positional STATE before its own flags
        os.execvp(sys.argv[0], [sys.argv[0], "--help", "maintenance"])
    if state not in ("on", "off"):
        raise BadInput(f"invalid state {state!r}: `invoke maintenance on` or `off`")
    if state == "off" and message is not None:
        raise BadInput("--message is for `maintenance on`")
    ctx = Context(
        settings.load(env),
        f"maintenance.{state}",
        options={"message": message, "retry_after": retry_after, "confirm": confirm},
        progress=progress_for(json),
        lock_wait=number("lock-wait", lock_wait),
    )
    run = procedure.turn_on if state == "on" else procedure.turn_off
    report = run_procedure(run, ctx, json)
    if not json:
        if state == "on":
            say(f"== {env} is in maintenance: {ctx.settings.public_url} answers 503 with the page")
        else:
            say(f"== {env} is live again: {ctx.settings.public_url} routes the app")
    return report
