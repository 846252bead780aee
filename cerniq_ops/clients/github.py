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


# -- pull requests, reviews, commit statuses (review.check, review.nudge) --------------------
def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def _get_all(api: str, path: str, token: str, params: dict | None = None) -> list[dict]:
    """Every page of a list endpoint (per_page=100, following the Link rel="next" header)."""
    url: str | None = f"{api.rstrip('/')}{path}"
    query: dict | None = {"per_page": 100, **(params or {})}
    items: list[dict] = []
    try:
        while url:
            r = requests.get(url, params=query, headers=_headers(token), timeout=10.0)
            if r.status_code == 404:
                raise StepFailed(f"GitHub API: {path} not found (repository, PR or token scope)")
            r.raise_for_status()
            items.extend(r.json())
            url, query = r.links.get("next", {}).get("url"), None
    except requests.RequestException as exc:
        raise StepFailed(f"GitHub API ({api}) unreachable or refused: {exc}") from exc
    return items


def _get_one(api: str, path: str, token: str) -> dict:
    try:
        r = requests.get(f"{api.rstrip('/')}{path}", headers=_headers(token), timeout=10.0)
        if r.status_code == 404:
            raise StepFailed(f"GitHub API: {path} not found (repository, PR or token scope)")
        r.raise_for_status()
    except requests.RequestException as exc:
        raise StepFailed(f"GitHub API ({api}) unreachable or refused: {exc}") from exc
    return r.json()


def pull(api: str, repo: str, number: int, token: str) -> dict:
    return _get_one(api, f"/repos/{repo}/pulls/{number}", token)


def open_pulls(api: str, repo: str, token: str) -> list[dict]:
    return _get_all(api, f"/repos/{repo}/pulls", token, {"state": "open"})


def pull_files(api: str, repo: str, number: int, token: str) -> list[str]:
    """The PR's changed paths (a renamed file counts under its old and new name)."""
    files = _get_all(api, f"/repos/{repo}/pulls/{number}/files", token)
    paths = [f["filename"] for f in files]
    paths += [f["previous_filename"] for f in files if f.get("previous_filename")]
    return list(dict.fromkeys(paths))


def pull_reviews(api: str, repo: str, number: int, token: str) -> list[dict]:
    return _get_all(api, f"/repos/{repo}/pulls/{number}/reviews", token)


def requested_reviewers(api: str, repo: str, number: int, token: str) -> dict:
    """{"users": [...], "teams": [...]} still asked to review."""
    return _get_one(api, f"/repos/{repo}/pulls/{number}/requested_reviewers", token)


def set_status(
    api: str, repo: str, sha: str, token: str, state: str, context: str, description: str
) -> None:
    """A commit status (success | failure | pending | error) under CONTEXT on SHA."""
    body = {"state": state, "context": context, "description": description[:140]}
    try:
        r = requests.post(
            f"{api.rstrip('/')}/repos/{repo}/statuses/{sha}",
            json=body,
            headers=_headers(token),
            timeout=10.0,
        )
        r.raise_for_status()
    except requests.RequestException as exc:
        raise StepFailed(f"GitHub API ({api}) refused the commit status: {exc}") from exc


def commit_date(api: str, repo: str, sha: str, token: str) -> str:
    """The committer date of SHA (ISO 8601): when a PR's head was pushed, near enough."""
    return _get_one(api, f"/repos/{repo}/commits/{sha}", token)["commit"]["committer"]["date"]
