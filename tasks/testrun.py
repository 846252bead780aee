"""`invoke test`: the seed's run-tests.sh (5.2) against the app repository."""

import os
import shlex

from invoke import task
from invoke.exceptions import Exit

from cerniq_ops import app_repo, team, testrun
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


@task(
    help={
        "repo": "the app repository checkout (default: team.yml app_repo)",
        "e2e": "also run the e2e command (or set RUN_E2E=true)",
        "json": "print the report as JSON (the commands' output goes to stderr)",
    }
)
@cli
def test(c, repo=None, e2e=False, json=False):
    """Unit, integration, [e2e] tests, coverage and its thresholds; exit 1 if any part failed."""
    t = team.load()
    root = app_repo.repo_dir(repo, t.get("app_repo"))
    e2e = e2e or os.environ.get("RUN_E2E", "").lower() == "true"
    parts, limits = testrun.plan(t, e2e), testrun.thresholds(t)
    out = (lambda line: say(line, err=True)) if json else say
    for part in parts:
        if part.status != "skip":
            out(f"=== {part.label}: {shlex.join(part.argv)}")
            testrun.run_part(part, root, to_stderr=json)
    coverage_cmd = t["tests"].get("coverage")
    generated = None
    if coverage_cmd:
        out(f"=== Coverage Report: {coverage_cmd}")
        generated = testrun.Part("coverage", "Coverage", shlex.split(coverage_cmd))
        testrun.run_part(generated, root, to_stderr=json)
    cov = testrun.read_coverage(t, root)
    if generated and generated.status == "fail":
        cov.status = "fail"
        cov.detail = "; ".join(
            filter(None, [f"report command exit {generated.exit_code}", cov.detail])
        )
    out(f"=== Coverage Thresholds: {', '.join(f'{k} {v:g}' for k, v in limits.items())}")
    if json:
        emit_json(testrun.report(parts, cov))
    else:
        say("")
        say(testrun.summary_text(parts, cov))
    if not testrun.ok(parts, cov):
        raise Exit(code=1)
