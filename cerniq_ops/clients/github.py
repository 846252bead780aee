"""GitHub Actions: the CI conclusion of the commit a version tag points at (seed 7.2 used
`gh run list`; this asks the REST API for the runs of that exact commit)."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from cerniq_ops.errors import StepFailed


@dataclass(frozen=True)
class CIStatus:
    sha: str | None
    conclusion: str  # success | failure | pending | none | ...
    detail: str

    @property
    def passing(self) -> bool:
        return self.conclusion == "success"


def summarize(sha: str, runs: list[dict]) -> CIStatus:
    """Pure: the verdict over the workflow runs of one commit (newest run per workflow)."""
    if not runs:
        return CIStatus(sha, "none", f"no workflow runs for {sha[:10]}")
    newest: dict = {}
    for run in sorted(runs, key=lambda r: r.get("created_at", "")):
        newest[run.get("workflow_id", run.get("name"))] = run
    pending = [r["name"] for r in newest.values() if r.get("status") != "completed"]
    failed = [
        r["name"]
        for r in newest.values()
        if r.get("status") == "completed" and r.get("conclusion") != "success"
    ]
    if failed:
        return CIStatus(sha, "failure", f"failed: {', '.join(sorted(failed))}")
    if pending:
        return CIStatus(sha, "pending", f"still running: {', '.join(sorted(pending))}")
    return CIStatus(sha, "success", f"{len(newest)} workflow(s) passed for {sha[:10]}")


def ci_status(api: str, repo: str, ref: str, token: str, timeout: float = 10.0) -> CIStatus:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    base = f"{api.rstrip('/')}/repos/{repo}"
    try:
        c = requests.get(f"{base}/commits/{ref}", headers=headers, timeout=timeout)
        if c.status_code in (404, 422):  # GitHub answers 422 for an unknown ref
            return CIStatus(None, "none", f"{repo} has no commit for {ref}")
        c.raise_for_status()
        sha = c.json()["sha"]
        r = requests.get(
            f"{base}/actions/runs",
            params={"head_sha": sha, "per_page": 100},
            headers=headers,
            timeout=timeout,
        )
        r.raise_for_status()
    except requests.RequestException as exc:
        raise StepFailed(f"GitHub API ({api}) unreachable or refused: {exc}") from exc
    return summarize(sha, r.json().get("workflow_runs", []))
