"""`invoke ci.*`: the app repository's GitHub Actions workflows (seed 4.4)."""

from invoke import task

from cerniq_ops import app_repo, team
from cerniq_ops import workflows as builders
from cerniq_ops.output import say
from tasks._cli import cli


@task(help={"repo": "the app repository checkout (default: team.yml app_repo)"})
@cli
def workflows(c, repo=None):
    """Write the PR checks, deploy (staging, production) and nightly verify workflows."""
    t = team.load()
    root = app_repo.repo_dir(repo, t.get("app_repo"))
    for path, text in builders.repo_files(t).items():
        say(f"{'wrote' if app_repo.write_if_changed(root, path, text) else 'unchanged'} {path}")
