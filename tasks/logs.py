"""`invoke logs`: a service's logs from every app host, merged in time order."""

from invoke import task

from cerniq_ops import hosts, settings
from cerniq_ops import logs as logs_mod
from cerniq_ops.output import say
from tasks._cli import cli


@task(
    name="logs",
    help={
        "env": "staging or production",
        "service": "api, web, workers, or traefik (Traefik's own log) (default api)",
        "since": "only lines since: a duration like 10m or 1h30m, or a time (UTC)",
        "lines": f"the last N lines of each container (default {logs_mod.DEFAULT_LINES} "
        "without --since)",
        "grep": "only lines containing this text (plain text, case-sensitive)",
        "follow": "keep printing new lines until Ctrl-C",
        "host": "only this app host (an inventory name, e.g. prod-app1)",
    },
)
@cli
def logs(c, env, service="api", since=None, lines=None, grep=None, follow=False, host=None):
    """Print the logs of SERVICE's containers on every app host of ENV (in parallel), merged
    in time order, each line `<host> <container> <timestamp> <text>`."""
    s = settings.load(env)
    s.hide_secrets()  # what containers print may carry them (the env file's URLs)
    query = logs_mod.check_query(s, service, since, lines, grep, follow)
    specs = logs_mod.choose_hosts(s, host)
    with hosts.session(s, specs) as state:
        if follow:
            count = logs_mod.follow(state, specs, s, query, say)
            say(f"== stopped following {service} on {len(specs)} host(s) ({count} line(s))")
            return
        found = logs_mod.collect(state, specs, s, query)
    for line in found:
        say(line.render())
    if not found:
        say(f"== no {service} log lines{' containing ' + repr(grep) if grep else ''}", err=True)
