"""`invoke lock.*`: the deploy lock of an environment (held while a procedure changes it)."""

from invoke import task

from cerniq_ops import hosts, lock, settings
from cerniq_ops.confirm import require
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


def _primary(s):
    return [s.primary_host]


@task(help={"env": "staging or production", "json": "print JSON"})
@cli
def status(c, env, json=False):
    """Show who holds the deploy lock of ENV, since when, and why."""
    s = settings.load(env)
    with hosts.session(s, _primary(s)) as state:
        held = lock.status(state.inventory.get_host(s.primary_host.name), s)
    if json:
        emit_json({"env": env, "held": held is not None, **(held.__dict__ if held else {})})
    elif held:
        say(f"{held.describe(env)}; age {held.age_seconds():.0f}s")
    else:
        say(f"no deploy lock on {env}")


@task(
    help={
        "env": "staging or production",
        "confirm": "the typed confirmation when not interactive: 'RELEASE <env>'",
    }
)
@cli
def release(c, env, confirm=None):
    """Remove a stale deploy lock of ENV (only when its holder is gone)."""
    s = settings.load(env)
    require(f"RELEASE {env}", confirm, f"releasing the deploy lock of {env}")
    with hosts.session(s, _primary(s)) as state:
        held = lock.force_release(state.inventory.get_host(s.primary_host.name), s)
    say(f"released: {held.describe(env)}" if held else f"no deploy lock on {env}")
