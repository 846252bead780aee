"""PagerDuty Events API v2: send one event (trigger); the page's delivery, never an exception."""

from __future__ import annotations

import requests


def send(url: str, event: dict, timeout: float = 10.0) -> tuple[bool, str]:
    """POST EVENT to the Events API (`/v2/enqueue`); (accepted, detail)."""
    try:
        r = requests.post(url, json=event, timeout=timeout)
    except requests.RequestException as exc:
        return False, f"PagerDuty unreachable ({type(exc).__name__})"
    if r.status_code == 202:
        try:
            dedup = r.json().get("dedup_key", event.get("dedup_key"))
        except ValueError:
            dedup = event.get("dedup_key")
        return True, f"PagerDuty accepted (dedup {dedup})"
    return False, f"PagerDuty answered {r.status_code} {r.text[:80]}"
