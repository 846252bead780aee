"""Local stand-ins for the two outside services that cannot be reached from here, speaking their
real formats: Slack's incoming webhook and GitHub's REST API for Actions runs.
They listen on 127.0.0.1 only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class _Server:
    def __init__(self, handler_cls):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SlackHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        slack: SlackWebhook = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        slack.raw.append(raw)
        if slack.rate_limit_next > 0:
            slack.rate_limit_next -= 1
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(b"rate_limited")
            return
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b"invalid_payload")
            return
        slack.posts.append(payload)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"ok")


class SlackWebhook(_Server):
    """Records every message; `rate_limit_next = N` answers the next N posts 429 Retry-After: 1."""

    def __init__(self):
        self.posts: list[dict] = []
        self.raw: list[str] = []
        self.rate_limit_next = 0
        super().__init__(_SlackHandler)

    @property
    def webhook(self) -> str:
        return f"{self.url}/services/T000/B000/XXXXXXXX"

    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.posts]


class _GitHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        gh: GitHubActions = self.server.owner
        if self.headers.get("Authorization") != f"Bearer {gh.token}":
            return self._json(
                401,
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
            )
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        # /repos/{owner}/{repo}/commits/{ref}
        if len(parts) == 5 and parts[0] == "repos" and parts[3] == "commits":
            ref = parts[4]
            if ref not in gh.conclusions:
                return self._json(422, {"message": f"No commit found for SHA: {ref}"})
            return self._json(200, {"sha": gh.sha(ref), "commit": {"message": f"release {ref}"}})
        # /repos/{owner}/{repo}/actions/runs?head_sha=...
        if len(parts) == 5 and parts[3:] == ["actions", "runs"]:
            sha = parse_qs(url.query).get("head_sha", [""])[0]
            ref = next((r for r in gh.conclusions if gh.sha(r) == sha), None)
            runs = []
            if ref is not None:
                conclusion = gh.conclusions[ref]
                runs.append(
                    {
                        "id": 1000 + len(ref),
                        "name": "CI",
                        "workflow_id": 42,
                        "head_sha": sha,
                        "status": "completed" if conclusion else "in_progress",
                        "conclusion": conclusion,
                        "created_at": "2026-11-28T10:00:00Z",
                    }
                )
            return self._json(200, {"total_count": len(runs), "workflow_runs": runs})
        return self._json(404, {"message": "Not Found"})


class GitHubActions(_Server):
    """`conclusions[tag] = "success" | "failure" | None (still running)`."""

    def __init__(self, token: str = "ghp_testtoken_0123456789"):
        self.token = token
        self.conclusions: dict[str, str | None] = {}
        super().__init__(_GitHubHandler)

    @staticmethod
    def sha(ref: str) -> str:
        import hashlib

        return hashlib.sha1(ref.encode()).hexdigest()
