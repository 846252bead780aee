"""`invoke verify`: audit the hosts of an environment with the testinfra checks of verify/."""

from invoke import task
from invoke.exceptions import Exit

from cerniq_ops import verification
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


@task(
    name="verify",
    help={
        "env": "staging or production",
        "host": "check only this host (an inventory name, e.g. prod-app1)",
        "junit": "also write JUnit XML to this file (for CI)",
        "json": "print the results as JSON on stdout",
        "read_only": "do not record the audit log's verified prefix on the hosts",
    },
)
@cli
def verify(c, env, host=None, junit=None, json=False, read_only=False):
    """Check that ENV's hosts are in the state the tooling says: one line per check per host.

    Files and modes under app_root, markers, containers on current-version and healthy, Traefik
    and the active color, disk, deploy lock, newest backup, audit log. Exit 1 on any failure.
    """
    result = verification.verify(env, host, junit=junit, read_only=read_only)
    if json:
        emit_json(result.to_dict())
    else:
        for line in result.lines():
            say(line)
        say(result.summary())
    if not result.ok:
        raise Exit(code=1)
    return result
