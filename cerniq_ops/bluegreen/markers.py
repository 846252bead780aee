"""The markers on every app host: `active-env` (the active color, the seed's), when it was
switched, and current-version / previous-version (what the active color runs, what ran before).
"""

from __future__ import annotations

import time

from cerniq_ops import hosts
from cerniq_ops.bluegreen.colors import COLORS, _pairs
from cerniq_ops.clock import now_utc
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context
from cerniq_ops.settings import Settings

MARKER = "active-env"
SWITCHED_AT = "active-env.switched-at"
VERSION_MARKERS = ("current-version", "previous-version")


# -- pure -----------------------------------------------------------------------------------------
def parse_marker(text: str | None, where: str) -> str | None:
    """The active color from `active-env`; None when absent; StepFailed for anything else."""
    if text is None:
        return None
    value = text.strip()
    if value in COLORS:
        return value
    raise StepFailed(
        f"{MARKER} on {where} holds {value[:40]!r}, not 'blue' or 'green': nothing was changed; "
        "check what Traefik routes with `invoke bluegreen.status`, then set it with "
        "`invoke bluegreen.switch --to blue|green`"
    )


# -- on the hosts ---------------------------------------------------------------------------------
def write_markers(ctx: Context, color: str, version: str | None, previous: str | None) -> None:
    """The markers on every app host; each host is recorded in `markers_written` first."""
    written = ctx.facts.setdefault("markers_written", set())
    for spec, host in _pairs(ctx):
        written.add(spec.name)
        write_markers_on(host, ctx.settings, color, version, previous)


def write_markers_on(host, s: Settings, color: str, version: str | None, previous: str | None):
    hosts.write_file(host, f"{s.app_root}/{MARKER}", color + "\n")
    hosts.write_file(host, f"{s.app_root}/{SWITCHED_AT}", f"{time.time():.0f} {now_utc()}\n")
    if version:
        if previous and previous != version:
            hosts.write_file(host, f"{s.app_root}/previous-version", previous + "\n")
        hosts.write_file(host, f"{s.app_root}/current-version", version + "\n")
