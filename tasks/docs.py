"""`invoke docs.*`: the documentation gate (seed 14.1, 14.2) on the app repository."""

from invoke import task
from invoke.exceptions import Exit

from cerniq_ops import app_repo, docs_gate, team
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


@task(
    help={
        "repo": "the app repository checkout (default: team.yml app_repo)",
        "base": "compare with this ref (default: team.yml docs.base, e.g. main)",
        "json": "print the gaps as JSON",
    }
)
@cli
def check(c, repo=None, base=None, json=False):
    """New services documented, CHANGELOG for user-facing changes, docs links resolve; exit 1
    naming each gap."""
    t = team.load()
    root = app_repo.repo_dir(repo, t.get("app_repo"))
    base = base or t["docs"].get("base", "main")
    found = docs_gate.check(t, root, base)
    if json:
        emit_json({"base": base, "ok": not found, "gaps": found})
    elif found:
        say(f"documentation gaps against {base}:")
        for line in found:
            say(f"  {line}")
    else:
        say(f"documentation rules met against {base}")
    if found:
        raise Exit(code=1)
