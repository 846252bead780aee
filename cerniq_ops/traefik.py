"""Traefik's API, read on the host itself (it listens on the host's loopback only).

Pure parsers are separate from the one function that fetches, so they are tested by equality.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from pyinfra.api.host import Host

from cerniq_ops import hosts
from cerniq_ops.compose import TRAEFIK_API_PORT
from cerniq_ops.errors import StepFailed


def api_get(host: Host, path: str) -> dict | list | None:
    """GET /api/PATH from the host's Traefik; None for 404; StepFailed when Traefik is down."""
    url = f"http://127.0.0.1:{TRAEFIK_API_PORT}/api/{path.lstrip('/')}"
    ok, out, _ = hosts.sh(
        host, ["curl", "-sS", "-m", "3", "-w", "\n%{http_code}", url], check=False, timeout=10
    )
    body, _, code = out.rpartition("\n")
    if not ok or code == "000":
        raise StepFailed(f"{host.name}: Traefik's API does not answer on :{TRAEFIK_API_PORT}")
    if code == "404":
        return None
    if code != "200":
        raise StepFailed(f"{host.name}: Traefik API {path} answered {code}")
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise StepFailed(
            f"{host.name}: Traefik API {path} answered 200 with a body that is not JSON: "
            f"{body.strip()[:60]!r}"
        ) from None


def server_status(service: dict | None) -> dict[str, str]:
    """{server url: UP/DOWN} of a Traefik service document (empty when absent)."""
    return dict((service or {}).get("serverStatus") or {})


def up_servers(service: dict | None) -> set[str]:
    return {url for url, status in server_status(service).items() if status == "UP"}


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
    """Poll CHECK until true; StepFailed naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
