"""A stand-in for GitHub's pull request endpoints, in GitHub's JSON shapes: pulls (listed,
filtered by head/base, opened), pull files, reviews, requested reviewers (paginated with the
Link header as GitHub does), commit statuses (set, combined), check runs, Actions workflow runs
and releases. Listens on 127.0.0.1; every request needs `Authorization: Bearer <token>`.

Given `origin` (a local bare repository), it knows the pushed branches and tags as GitHub would:
a PR's head is its branch's commit there, a PR or release for a ref origin lacks is refused."""

from __future__ import annotations

import json
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

from tests.support.outside import _Server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, code: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        gh: GitHubPulls = self.server.owner
        gh.requests.append(f"{self.command} {self.path}")
        if self.headers.get("Authorization") == f"Bearer {gh.token}":
            return True
        self._json(
            401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        )
        return False

    def _page(self, url, items: list) -> None:
        q = parse_qs(url.query)
        per_page = min(int(q.get("per_page", ["30"])[0]), 100)
        page = int(q.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            nxt = {**{k: v[0] for k, v in q.items()}, "page": page + 1, "per_page": per_page}
            headers["Link"] = f'<{self.server.owner.url}{url.path}?{urlencode(nxt)}>; rel="next"'
        self._json(200, chunk, headers)

    def do_GET(self):
        if not self._authorized():
            return
        gh: GitHubPulls = self.server.owner
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "repos" or f"{parts[1]}/{parts[2]}" != gh.repo:
            return self._json(404, {"message": "Not Found"})
        rest = parts[3:]
        q = parse_qs(url.query)
        if len(rest) == 2 and rest[0] == "commits":
            sha = gh.resolve(rest[1])
            date = gh.commits.get(rest[1]) or (sha and "2026-12-01T10:00:00Z")
            if date is None:
                return self._json(422, {"message": f"No commit found for SHA: {rest[1]}"})
            who = {"name": "dev", "email": "dev@cerniq.app", "date": date}
            return self._json(
                200,
                {
                    "sha": sha or rest[1],
                    "commit": {"author": who, "committer": who, "message": "x"},
                },
            )
        if len(rest) == 3 and rest[0] == "commits" and rest[2] in ("status", "check-runs"):
            sha = gh.resolve(rest[1])
            if sha is None:
                return self._json(422, {"message": f"No commit found for SHA: {rest[1]}"})
            if rest[2] == "status":
                return self._json(200, gh.combined_status(sha))
            runs = gh.check_runs_json(sha)
            return self._json(200, {"total_count": len(runs), "check_runs": runs})
        if rest == ["actions", "runs"]:
            sha = q.get("head_sha", [""])[0]
            runs = [
                {
                    "id": r["id"],
                    "name": r["name"],
                    "workflow_id": 40 + i,
                    "head_sha": sha,
                    "status": r["status"],
                    "conclusion": r["conclusion"],
                    "created_at": r["started_at"],
                }
                for i, r in enumerate(gh.check_runs_json(sha))
            ]
            return self._json(200, {"total_count": len(runs), "workflow_runs": runs})
        if rest == ["releases"]:
            return self._page(url, list(reversed(gh.releases)))
        if len(rest) == 3 and rest[:2] == ["releases", "tags"]:
            found = [r for r in gh.releases if r["tag_name"] == rest[2]]
            if not found:
                return self._json(404, {"message": "Not Found"})
            return self._json(200, found[0])
        if rest == ["pulls"]:
            state = q.get("state", ["open"])[0]
            head, base = q.get("head", [None])[0], q.get("base", [None])[0]
            pulls = [gh.pull_json(n) for n in sorted(gh.pulls)]
            pulls = [p for p in pulls if state == "all" or p["state"] == state]
            if head:  # GitHub's filter is user:ref-name
                pulls = [p for p in pulls if f"{gh.owner}:{p['head']['ref']}" == head]
            if base:
                pulls = [p for p in pulls if p["base"]["ref"] == base]
            return self._page(url, pulls)
        if len(rest) >= 2 and rest[0] == "pulls" and rest[1].isdigit():
            n = int(rest[1])
            if n not in gh.pulls:
                return self._json(404, {"message": "Not Found"})
            if len(rest) == 2:
                return self._json(200, gh.pull_json(n))
            if rest[2:] == ["files"]:
                return self._page(url, gh.files_json(n))
            if rest[2:] == ["reviews"]:
                return self._page(url, gh.reviews_json(n))
            if rest[2:] == ["requested_reviewers"]:
                p = gh.pulls[n]
                return self._json(
                    200, {"users": [{"login": u} for u in p["requested"]], "teams": []}
                )
        return self._json(404, {"message": "Not Found"})

    def do_POST(self):
        if not self._authorized():
            return
        gh: GitHubPulls = self.server.owner
        parts = urlparse(self.path).path.strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if len(parts) < 4 or f"{parts[1]}/{parts[2]}" != gh.repo:
            return self._json(404, {"message": "Not Found"})
        rest = parts[3:]
        if len(parts) == 5 and parts[3] == "statuses":
            if body.get("state") not in ("error", "failure", "pending", "success"):
                return self._json(422, {"message": "Validation Failed"})
            status = {"id": len(gh.statuses) + 1, "sha": parts[4], **body}
            gh.statuses.append(status)
            return self._json(201, status)
        if rest == ["check-runs"]:  # what a CI app reports (testbed/app_ci.py)
            return self._create_check_run(gh, body)
        if rest == ["pulls"]:
            return self._create_pull(gh, body)
        if len(rest) == 3 and rest[0] == "pulls" and rest[2] == "requested_reviewers":
            n = int(rest[1]) if rest[1].isdigit() else 0
            if n not in gh.pulls:
                return self._json(404, {"message": "Not Found"})
            p = gh.pulls[n]
            for login in body.get("reviewers", []):
                if login == p["author"]:
                    return self._invalid("Review cannot be requested from pull request author.")
                if login not in p["requested"]:
                    p["requested"].append(login)
            return self._json(201, gh.pull_json(n))
        if rest == ["releases"]:
            return self._create_release(gh, body)
        return self._json(404, {"message": "Not Found"})

    def _invalid(self, message: str, field: str | None = None) -> None:
        error = {"resource": "PullRequest", "code": "custom", "message": message}
        if field:
            error = {"resource": "PullRequest", "field": field, "code": "invalid"}
        self._json(
            422,
            {
                "message": "Validation Failed",
                "errors": [error],
                "documentation_url": "https://docs.github.com/rest",
            },
        )

    def _create_check_run(self, gh: GitHubPulls, body: dict) -> None:
        sha, name = body.get("head_sha"), body.get("name")
        if not sha or not name:
            return self._json(422, {"message": "Invalid request.", "errors": ["name, head_sha"]})
        completed = body.get("status") == "completed" or "conclusion" in body
        gh.set_check(sha, body.get("conclusion") if completed else None, name)
        [run] = [r for r in gh.check_runs_json(sha) if r["name"] == name]
        return self._json(201, run)

    def _create_pull(self, gh: GitHubPulls, body: dict) -> None:
        head, base = body.get("head", ""), body.get("base", "")
        if not body.get("title") or not head or not base:
            return self._invalid("title, head and base are required")
        if gh.resolve(head) is None:
            return self._invalid("", field="head")
        if gh.resolve(base) is None:
            return self._invalid("", field="base")
        for p in gh.pulls.values():
            if p["state"] == "open" and p["head_ref"] == head and p["base_ref"] == base:
                return self._invalid(f"A pull request already exists for {gh.owner}:{head}.")
        n = max(gh.pulls, default=0) + 1
        gh.add_pull(n, gh.user, [], gh.now, title=body["title"], head_ref=head, base_ref=base)
        gh.pulls[n]["body"] = body.get("body", "")
        return self._json(201, gh.pull_json(n))

    def _create_release(self, gh: GitHubPulls, body: dict) -> None:
        tag = body.get("tag_name", "")
        if any(r["tag_name"] == tag for r in gh.releases):
            error = {"resource": "Release", "code": "already_exists", "field": "tag_name"}
            return self._json(422, {"message": "Validation Failed", "errors": [error]})
        if gh.origin is not None and gh.resolve(tag) is None:
            error = {"resource": "Release", "code": "invalid", "field": "tag_name"}
            return self._json(422, {"message": "Validation Failed", "errors": [error]})
        rid = 500 + len(gh.releases)
        release = {
            "id": rid,
            "url": f"{gh.url}/repos/{gh.repo}/releases/{rid}",
            "html_url": f"https://github.com/{gh.repo}/releases/tag/{tag}",
            "tag_name": tag,
            "target_commitish": body.get("target_commitish", "main"),
            "name": body.get("name") or tag,
            "body": body.get("body", ""),
            "draft": bool(body.get("draft", False)),
            "prerelease": bool(body.get("prerelease", False)),
            "created_at": gh.now,
            "published_at": None if body.get("draft") else gh.now,
            "author": {"login": gh.user, "type": "User"},
        }
        gh.releases.append(release)
        return self._json(201, release)


class GitHubPulls(_Server):
    """`add_pull(n, author, files, created_at)`, `add_review(n, login, state, at)`; commit
    statuses posted are in `statuses`, every request line in `requests`."""

    def __init__(
        self,
        repo: str = "cerniq/cerniq-app",
        token: str = "ghp_testtoken_0123456789",
        origin: Path | None = None,
        user: str = "release-bot",
    ):
        self.repo, self.token, self.origin, self.user = repo, token, origin, user
        self.pulls: dict[int, dict] = {}
        self.statuses: list[dict] = []
        self.requests: list[str] = []
        self.commits: dict[str, str] = {}  # sha -> committer date
        self.checks: dict[str, list[dict]] = {}  # sha -> check runs (GitHub Actions: both)
        self.releases: list[dict] = []
        self.now = "2026-12-01T10:00:00Z"
        super().__init__(_Handler)

    @property
    def owner(self) -> str:
        return self.repo.split("/")[0]

    def resolve(self, ref: str) -> str | None:
        """A sha, branch or tag -> its commit (in `origin` when given), or None."""
        if self.origin is not None:
            r = subprocess.run(
                [
                    "git",
                    "-C",
                    str(self.origin),
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    f"{ref}^{{commit}}",
                ],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                return r.stdout.strip()
        if ref in self.commits or any(p["head"] == ref for p in self.pulls.values()):
            return ref
        if len(ref) == 40 and all(ch in "0123456789abcdef" for ch in ref):
            return ref
        return None

    def set_check(self, ref: str, conclusion: str | None, name: str = "CI") -> str:
        """A check run NAME on REF's commit: a conclusion, or None for still running."""
        sha = self.resolve(ref) or ref
        runs = [r for r in self.checks.get(sha, []) if r["name"] != name]
        runs.append({"name": name, "conclusion": conclusion})
        self.checks[sha] = runs
        return sha

    def check_runs_json(self, sha: str) -> list[dict]:
        return [
            {
                "id": 9000 + i,
                "head_sha": sha,
                "name": r["name"],
                "status": "completed" if r["conclusion"] else "in_progress",
                "conclusion": r["conclusion"],
                "started_at": self.now,
                "completed_at": self.now if r["conclusion"] else None,
                "app": {"slug": "github-actions"},
            }
            for i, r in enumerate(self.checks.get(sha, []))
        ]

    def combined_status(self, sha: str) -> dict:
        newest: dict[str, dict] = {}
        for st in self.statuses:
            if st["sha"] == sha:
                newest[st["context"]] = st
        statuses = sorted(newest.values(), key=lambda st: st["id"], reverse=True)
        states = {st["state"] for st in statuses}
        state = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not states
            else "success"
        )
        return {
            "state": state,
            "statuses": statuses,
            "sha": sha,
            "total_count": len(statuses),
            "commit_url": f"{self.url}/repos/{self.repo}/commits/{sha}",
        }

    def add_pull(
        self,
        number,
        author,
        files,
        created_at,
        title=None,
        requested=(),
        draft=False,
        head_ref=None,
        base_ref="develop",
        body="",
        labels=(),
    ):
        self.pulls[number] = {
            "author": author,
            "files": list(files),
            "created_at": created_at,
            "title": title or f"change {number}",
            "requested": list(requested),
            "draft": draft,
            "reviews": [],
            "state": "open",
            "head": self.head_sha(number),
            "head_ref": head_ref or f"feature/{number}",
            "base_ref": base_ref,
            "body": body,
            "labels": list(labels),
        }
        if head_ref is None:
            self.commits[self.head_sha(number)] = created_at

    def push(self, number, at):
        """The author pushes a new head commit at AT."""
        import hashlib

        p = self.pulls[number]
        p["head"] = hashlib.sha1(f"{number}-{at}".encode()).hexdigest()
        self.commits[p["head"]] = at

    def add_review(self, number, login, state, at):
        p = self.pulls[number]
        p["reviews"].append({"login": login, "state": state, "at": at, "commit": self.head(number)})
        if login in p["requested"]:  # a submitted review answers the request, as on GitHub
            p["requested"].remove(login)

    def head(self, number: int) -> str:
        """The PR's head commit: its branch's commit in origin when the PR was opened on one."""
        p = self.pulls[number]
        live = self.resolve(p["head_ref"]) if self.origin is not None else None
        return live or p["head"]

    @staticmethod
    def head_sha(number: int) -> str:
        return f"{number:040x}"

    def pull_json(self, n: int) -> dict:
        p = self.pulls[n]
        return {
            "url": f"{self.url}/repos/{self.repo}/pulls/{n}",
            "html_url": f"https://github.com/{self.repo}/pull/{n}",
            "number": n,
            "state": p["state"],
            "title": p["title"],
            "user": {"login": p["author"], "type": "User"},
            "draft": p["draft"],
            "created_at": p["created_at"],
            "updated_at": p["created_at"],
            "requested_reviewers": [{"login": u, "type": "User"} for u in p["requested"]],
            "requested_teams": [],
            "body": p["body"],
            "labels": [
                {"id": 700 + i, "name": name, "color": "ededed", "default": False}
                for i, name in enumerate(p.get("labels", []))
            ],
            "head": {"ref": p["head_ref"], "sha": self.head(n)},
            "base": {"ref": p["base_ref"], "sha": "0" * 40},
        }

    def files_json(self, n: int) -> list[dict]:
        return [
            {
                "sha": f"{i:040x}",
                "filename": f,
                "status": "modified",
                "additions": 1,
                "deletions": 0,
                "changes": 1,
            }
            for i, f in enumerate(self.pulls[n]["files"])
        ]

    def reviews_json(self, n: int) -> list[dict]:
        return [
            {
                "id": 80 + i,
                "user": {"login": r["login"], "type": "User"},
                "body": "",
                "state": r["state"],
                "submitted_at": r["at"],
                "commit_id": r["commit"],
                "author_association": "MEMBER",
            }
            for i, r in enumerate(self.pulls[n]["reviews"])
        ]
