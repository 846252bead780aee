"""`invoke exec -- CMD...`: a command in a service's container on every app host."""

import os
import sys

from invoke import task
from invoke.exceptions import Exit

from cerniq_ops import execute, hosts, settings
from cerniq_ops.output import say
from tasks._cli import cli


@task(
    name="exec",
    help={
        "env": "staging or production",
        "service": "api, web or workers (default api)",
        "host": "only this app host (an inventory name, e.g. prod-app1)",
        "primary": "only the primary app host",
        "new": "a one-off container of the current version instead of a running one",
        "interactive": "a terminal session on one host (with --host or --primary)",
        "confirm": "the typed confirmation when not interactive: 'DEPLOY PRODUCTION'",
    },
)
@cli
def exec_(
    c,
    env,
    service="api",
    host=None,
    primary=False,
    new=False,
    interactive=False,
    confirm=None,
):
    """Run the command after `--` in a container of SERVICE on ENV's app hosts (at once):
    each host's output under its name; the exit code is the worst host's. The command is
    passed as arguments, never as shell text: `invoke exec --env staging -- ls -l /app`."""
    s = settings.load(env)
    s.hide_secrets()  # what containers print may carry them (the env file's URLs)
    command = execute.remainder_argv(sys.argv, getattr(c, "remainder", "") or "")
    request = execute.check(s, service, command, host, primary, new, interactive)
    how = execute.confirm(s, confirm)
    with hosts.session(s, list(request.targets)) as state:
        if interactive:
            argv = execute.interactive_argv(state, s, request)
        else:
            outcomes = execute.run_all(state, s, request)
    if interactive:
        os.execvp(argv[0], argv)  # the terminal is ssh's from here on
    for line in execute.render(outcomes):
        say(line)
    code = execute.worst(outcomes)
    if how != "no confirmation needed":
        say(f"== exec on {env}: {how}", err=True)
    if code:
        raise Exit(code=code)
