"""`invoke lock.*`: the deploy lock of an environment (held while a procedure changes it)."""

from invoke import task

from cerniq_ops import audit, hosts, lock, settings
from cerniq_ops.confirm import require
from cerniq_ops.errors import LockHeld
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


def _primary(s):
    return [s.primary_host]


@task(help={"env": "staging or production", "json": "print JSON"})
@cli
def status(c, env, json=False):
    """Show who holds the deploy lock of ENV, since when, at which step, and if it still runs."""
    s = settings.load(env)
    with hosts.session(s, _primary(s)) as state:
        held = lock.status(state.inventory.get_host(s.primary_host.name), s)
    if json:
        body = {"env": env, "held": held is not None}
        if held:
            body.update(lock.to_json_dict(held), holder_alive=held.holder_alive())
        emit_json(body)
    elif held:
        say(
            f"{held.describe(env)}; age {held.age_seconds():.0f}s, last sign of life "
            f"{held.idle_seconds():.0f}s ago; holder {held.liveness()}"
        )
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
    """Remove a stale deploy lock of ENV: the one shown, only if its holder is not running."""
    s = settings.load(env)
    with hosts.session(s, _primary(s)) as state:
        host = state.inventory.get_host(s.primary_host.name)
        text, held = lock.read(host, s)
        if held is None:
            say(f"no deploy lock on {env}")
            return
        if held.holder_alive():
            raise LockHeld(
                f"{held.describe(env)}; its holder is still running on this machine: "
                "wait for it (or stop it with Ctrl-C, which releases the lock)"
            )
        say(f"{held.describe(env)}; holder {held.liveness()}")
        require(f"RELEASE {env}", confirm, f"releasing the deploy lock of {env}")
        if not lock.release_seen(host, s, text):
            raise LockHeld(
                f"the deploy lock on {env} changed since it was read (its holder is working, "
                f"or a new run took it); nothing removed; run `invoke lock.status --env {env}`"
            )
        audit.append(
            host,
            s,
            audit.audit_line(
                env=env,
                procedure="lock.release",
                step="release",
                result="ok",
                who=audit.actor(),
                version=held.version,
                detail=f"released {held.describe(env)}; holder {held.liveness()}",
            ),
        )
    say(f"released: {held.describe(env)}")
