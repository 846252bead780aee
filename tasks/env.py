"""`invoke env.show`: the resolved settings of an environment, secrets redacted."""

from invoke import task

from cerniq_ops import settings
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


@task(help={"env": "staging or production", "json": "print JSON instead of text"})
@cli
def show(c, env, json=False):
    """Print the resolved settings of ENV (inventory + group data); secrets show set/missing."""
    view = settings.load(env).public_view()
    if json:
        emit_json(view)
        return
    for key, value in view.items():
        if key != "hosts":
            say(f"{key:28} {value}")
    say("hosts:")
    for h in view["hosts"]:
        say(f"  {h['name']:28} {h['address']:18} {','.join(h['roles'])}")
