"""A stand-in for PagerDuty's Events API v2 (POST /v2/enqueue): validates the fields PagerDuty
requires and answers 202 {"status": "success", ...} or 400 as the real one does."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from tests.support.outside import _Server

SEVERITIES = ("critical", "error", "warning", "info")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        pd: PagerDutyEvents = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v2/enqueue":
            return self._json(404, {"status": "not found"})
        try:
            event = json.loads(raw)
        except json.JSONDecodeError:
            return self._json(400, {"status": "invalid event", "errors": ["bad JSON"]})
        p = event.get("payload") or {}
        errors = [f"'{k}' is missing" for k in ("summary", "source", "severity") if not p.get(k)]
        if not event.get("routing_key"):
            errors.append("'routing_key' is missing")
        if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if p.get("severity") and p["severity"] not in SEVERITIES:
            errors.append("'severity' is invalid")
        if errors:
            return self._json(
                400,
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
            )
        pd.events.append(event)
        self._json(
            202,
            {
                "status": "success",
                "message": "Event processed",
                "dedup_key": event.get("dedup_key") or f"auto-{len(pd.events)}",
            },
        )


class PagerDutyEvents(_Server):
    def __init__(self):
        self.events: list[dict] = []
        super().__init__(_Handler)

    @property
    def enqueue_url(self) -> str:
        return f"{self.url}/v2/enqueue"
