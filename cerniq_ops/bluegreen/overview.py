"""`invoke bluegreen.status`: per app host, the marker, what Traefik routes, an unfinished run
and each color's version and health.
"""

from __future__ import annotations

from cerniq_ops import hosts
from cerniq_ops.bluegreen.colors import COLORS, color_port
from cerniq_ops.bluegreen.containers import color_version
from cerniq_ops.bluegreen.markers import MARKER, SWITCHED_AT
from cerniq_ops.bluegreen.pending import _pending_path, parse_pending
from cerniq_ops.bluegreen.routing import describe_routed, routed_service
from cerniq_ops.errors import StepFailed
from cerniq_ops.settings import Settings


# -- status (read only: no lock, no audit) -------------------------------------------------------
def status(s: Settings) -> list[dict]:
    """Per app host: the marker, what Traefik routes, and each color's version and health."""
    rows = []
    with hosts.session(s, s.app_hosts) as state:
        for spec in s.app_hosts:
            host = state.inventory.get_host(spec.name)
            marker = hosts.read_file(host, f"{s.app_root}/{MARKER}")
            since = (hosts.read_file(host, f"{s.app_root}/{SWITCHED_AT}") or "").split()
            try:
                routed = describe_routed(host, routed_service(host))
            except StepFailed as exc:
                routed = f"Traefik down: {exc}"
            pending = parse_pending(hosts.read_file(host, _pending_path(s)))
            colors = {}
            for color in COLORS:
                version, h = color_version(s, host, spec, color)
                colors[color] = {
                    "version": version,
                    "healthy": h.ok,
                    "detail": h.detail,
                    "port": color_port(s, color),
                }
            rows.append(
                {
                    "host": spec.name,
                    "active": (marker or "").strip() or None,
                    "switched_at": since[1] if len(since) > 1 else None,
                    "traefik_routes": routed,
                    "unfinished": (
                        f"{pending.procedure} {pending.from_color or 'none'} -> {pending.to}"
                        if pending
                        else None
                    ),
                    "colors": colors,
                }
            )
    return rows
