"""Health over HTTP: what the seed does with `curl .../health | jq -r .status`, with deadlines."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class Health:
    ok: bool
    version: str | None
    detail: str


def health(base_url: str, timeout: float = 3.0) -> Health:
    url = f"{base_url.rstrip('/')}/health"
    try:
        r = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return Health(False, None, f"{url}: {type(exc).__name__}")
    try:
        body = r.json()
    except ValueError:
        body = {}
    status = body.get("status") if isinstance(body, dict) else None
    ok = r.status_code == 200 and status == "ok"
    return Health(
        ok,
        body.get("version") if isinstance(body, dict) else None,
        f"{url}: HTTP {r.status_code} status={status}",
    )


def wait_healthy(
    base_url: str, retries: int, interval: float, version: str | None = None
) -> tuple[bool, Health, int]:
    """Poll /health up to RETRIES times, INTERVAL apart (seed: 5 x 5 s); (ok, last, attempts).

    With VERSION, healthy means healthy *and* reporting that version.
    """
    last = Health(False, None, "not checked")
    for attempt in range(1, retries + 1):
        last = health(base_url)
        if last.ok and (version is None or last.version == version):
            return True, last, attempt
        if attempt < retries:
            time.sleep(interval)
    return False, last, retries
