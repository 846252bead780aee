"""A stand-in for GitHub's pull request endpoints, in GitHub's JSON shapes: pulls, pull files,
reviews, requested reviewers (paginated with the Link header as GitHub does) and commit
statuses. Listens on 127.0.0.1; every request needs `Authorization: Bearer <token>`."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
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
        if len(rest) == 2 and rest[0] == "commits":
            date = gh.commits.get(rest[1])
            if date is None:
                return self._json(422, {"message": f"No commit found for SHA: {rest[1]}"})
            who = {"name": "dev", "email": "dev@cerniq.app", "date": date}
            return self._json(
                200, {"sha": rest[1], "commit": {"author": who, "committer": who, "message": "x"}}
            )
        if rest == ["pulls"]:
            state = parse_qs(url.query).get("state", ["open"])[0]
            pulls = [gh.pull_json(n) for n in sorted(gh.pulls)]
            return self._page(url, [p for p in pulls if state == "all" or p["state"] == state])
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
        if len(parts) == 5 and parts[3] == "statuses":
            if body.get("state") not in ("error", "failure", "pending", "success"):
                return self._json(422, {"message": "Validation Failed"})
            status = {"id": len(gh.statuses) + 1, "sha": parts[4], **body}
            gh.statuses.append(status)
            return self._json(201, status)
        return self._json(404, {"message": "Not Found"})


class GitHubPulls(_Server):
    """`add_pull(n, author, files, created_at)`, `add_review(n, login, state, at)`; commit
    statuses posted are in `statuses`, every request line in `requests`."""

    def __init__(self, repo: str = "cerniq/cerniq-app", token: str = "ghp_testtoken_0123456789"):
        self.repo, self.token = repo, token
        self.pulls: dict[int, dict] = {}
        self.statuses: list[dict] = []
        self.requests: list[str] = []
        self.commits: dict[str, str] = {}  # sha -> committer date
        super().__init__(_Handler)

    def add_pull(self, number, author, files, created_at, title=None, requested=(), draft=False):
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
        }
        self.commits[self.head_sha(number)] = created_at

    def push(self, number, at):
        """The author pushes a new head commit at AT."""
        import hashlib

        p = self.pulls[number]
        p["head"] = hashlib.sha1(f"{number}-{at}".encode()).hexdigest()
        self.commits[p["head"]] = at

    def add_review(self, number, login, state, at):
        p = self.pulls[number]
        p["reviews"].append({"login": login, "state": state, "at": at, "commit": p["head"]})

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
            "head": {"ref": f"feature/{n}", "sha": p["head"]},
            "base": {"ref": "develop", "sha": "0" * 40},
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
