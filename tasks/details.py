"""`invoke details`: per app host, what runs, what Traefik routes, the color, lock, last change."""

from invoke import task

from cerniq_ops import details as details_mod
from cerniq_ops import hosts, settings
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


@task(name="details", help={"env": "staging or production", "json": "print JSON"})
@cli
def details(c, env, json=False):
    """Show ENV per app host: containers of every service (version, health, uptime), Traefik's
    routers and servers, the active color, maintenance mode; the deploy lock and the last
    deploy, switch or rollback of the audit log. Reads only."""
    s = settings.load(env)
    with hosts.session(s, list(s.app_hosts)) as state:
        doc = details_mod.gather(state, s)
    if json:
        emit_json(doc)
        return
    for line in details_mod.render(doc):
        say(line)
