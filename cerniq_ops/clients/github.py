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


# -- releases and hotfixes (release.*, hotfix.*): PRs opened, checks read, releases published --
def _send(api: str, method: str, path: str, token: str, body: dict) -> requests.Response:
    try:
        return requests.request(
            method, f"{api.rstrip('/')}{path}", json=body, headers=_headers(token), timeout=10.0
        )
    except requests.RequestException as exc:
        raise StepFailed(f"GitHub API ({api}) unreachable or refused: {exc}") from exc


def _refused(r: requests.Response, what: str) -> StepFailed:
    try:
        data = r.json()
        errors = "; ".join(e.get("message") or e.get("code", "") for e in data.get("errors", []))
        message = data.get("message", "") + (f" ({errors})" if errors else "")
    except ValueError:
        message = r.text[:120]
    return StepFailed(f"GitHub API refused {what}: {r.status_code} {message}")


def find_pull(api: str, repo: str, head: str, base: str, token: str, state: str = "open"):
    """The PR from branch HEAD (same repository) into BASE, or None."""
    owner = repo.split("/")[0]
    pulls = _get_all(
        api,
        f"/repos/{repo}/pulls",
        token,
        {"state": state, "head": f"{owner}:{head}", "base": base},
    )
    return pulls[0] if pulls else None


def create_pull(api: str, repo: str, token: str, *, title: str, head: str, base: str, body: str):
    r = _send(
        api,
        "POST",
        f"/repos/{repo}/pulls",
        token,
        {
            "title": title,
            "head": head,
            "base": base,
            "body": body,
            "maintainer_can_modify": True,
        },
    )
    if r.status_code != 201:
        raise _refused(r, f"the pull request {head} -> {base}")
    return r.json()


def request_reviewers(api: str, repo: str, number: int, token: str, logins: list[str]) -> dict:
    r = _send(
        api,
        "POST",
        f"/repos/{repo}/pulls/{number}/requested_reviewers",
        token,
        {"reviewers": logins},
    )
    if r.status_code != 201:
        raise _refused(r, f"the reviewers of PR #{number}")
    return r.json()


def summarize_checks(sha: str, combined: dict, check_runs: list[dict]) -> CIStatus:
    """Pure: the verdict over a commit's statuses (newest per context, as GitHub's combined
    status gives them) and its check runs (newest per name)."""
    results: dict[str, str] = {}
    for s in combined.get("statuses", []):
        results.setdefault(f"status {s['context']}", s["state"])  # newest first
    for run in sorted(check_runs, key=lambda r: r.get("started_at") or "", reverse=True):
        state = run.get("conclusion") if run.get("status") == "completed" else "pending"
        results.setdefault(f"check {run['name']}", state or "pending")
    if not results:
        return CIStatus(sha, "none", f"no statuses or check runs on {sha[:10]}")
    good = ("success", "neutral", "skipped")
    failed = sorted(k for k, v in results.items() if v not in good and v != "pending")
    pending = sorted(k for k, v in results.items() if v == "pending")
    if failed:
        return CIStatus(sha, "failure", f"failed on {sha[:10]}: {', '.join(failed)}")
    if pending:
        return CIStatus(sha, "pending", f"still running on {sha[:10]}: {', '.join(pending)}")
    return CIStatus(sha, "success", f"{len(results)} check(s) passed on {sha[:10]}")


def commit_checks(api: str, repo: str, sha: str, token: str) -> CIStatus:
    """CI of one commit: its combined status and its check runs (GitHub Actions reports here)."""
    combined = _get_one(api, f"/repos/{repo}/commits/{sha}/status", token)
    runs = _get_one(api, f"/repos/{repo}/commits/{sha}/check-runs", token)
    return summarize_checks(sha, combined, runs.get("check_runs", []))


def release_by_tag(api: str, repo: str, tag: str, token: str) -> dict | None:
    try:
        r = requests.get(
            f"{api.rstrip('/')}/repos/{repo}/releases/tags/{tag}",
            headers=_headers(token),
            timeout=10.0,
        )
    except requests.RequestException as exc:
        raise StepFailed(f"GitHub API ({api}) unreachable or refused: {exc}") from exc
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise _refused(r, f"the release of {tag}")
    return r.json()


def create_release(api: str, repo: str, token: str, *, tag: str, name: str, body: str) -> dict:
    r = _send(
        api,
        "POST",
        f"/repos/{repo}/releases",
        token,
        {
            "tag_name": tag,
            "name": name,
            "body": body,
            "draft": False,
            "prerelease": False,
        },
    )
    if r.status_code != 201:
        raise _refused(r, f"the release of {tag}")
    return r.json()
