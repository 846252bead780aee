"""What Traefik routes: `active.yml`, the file provider's dynamic configuration (the active
color, a canary's weighted split, the preview routers), and a change of it: written on every app
host (atomic rename), then confirmed on each through Traefik's API and the host's entrypoint.
"""

from __future__ import annotations

import time

import requests

from cerniq_ops import compose, hosts, traefik
from cerniq_ops.bluegreen.colors import (
    COLORS,
    ROUTED_SERVICES,
    _pairs,
    alias,
    other,
    routed_name,
    traefik_service,
)
from cerniq_ops.deploy import host_url
from cerniq_ops.errors import BadInput
from cerniq_ops.procedure import Context
from cerniq_ops.settings import HostSpec, Settings

CONFIRM_SECONDS = 30.0  # how long Traefik may take to confirm a routing on a host
DYNAMIC_FILE = "active.yml"
COLOR_HEADER = "X-Cerniq-Color"
ROUTER, WEB_ROUTER = "cerniq-app", "cerniq-web"
PRIORITY = 10_000  # above the docker-provider routers of the rolling deploy (rule length)
PREVIEW_PRIORITY = 20_000


# -- pure builders: Traefik's dynamic configuration ----------------------------------------------
def dynamic_config(active: str | None, canary_weight: int | None = None) -> dict:
    """Routers and services of `active.yml`.

    ACTIVE None: no public router (first rollout, before its switch): only the previews.
    CANARY_WEIGHT w (0 < w < 100): w% of requests to the other color, the rest to ACTIVE.
    """
    routers: dict = {}
    services: dict = {}
    middlewares: dict = {"cerniq-web-strip": {"stripPrefix": {"prefixes": ["/web"]}}}
    for color in COLORS:
        middlewares[f"cerniq-color-{color}"] = {
            "headers": {"customResponseHeaders": {COLOR_HEADER: color}}
        }
        for svc in ROUTED_SERVICES:
            services[traefik_service(color, svc)] = {
                "loadBalancer": {
                    "servers": [{"url": f"http://{alias(svc, color)}:80"}],
                    "healthCheck": {"path": "/health", "interval": "1s", "timeout": "3s"},
                }
            }
        header = f"Header(`{COLOR_HEADER}`, `{color}`)"
        routers[f"cerniq-preview-{color}"] = _router(
            header, traefik_service(color), PREVIEW_PRIORITY, [f"cerniq-color-{color}"]
        )
        routers[f"cerniq-preview-{color}-web"] = _router(
            f"{header} && PathPrefix(`/web`)",
            traefik_service(color, "web"),
            PREVIEW_PRIORITY + 1,
            ["cerniq-web-strip", f"cerniq-color-{color}"],
        )
    if active is not None:
        if canary_weight is not None and not 0 < canary_weight < 100:
            raise BadInput(f"canary weight {canary_weight} must be between 1 and 99")
        if canary_weight is None:
            api, web, tag = routed_name(active), routed_name(active, "web"), [active]
            for name, svc in ((api, "api"), (web, "web")):
                services[name] = {  # never a 503 for a health-check blip while the other runs
                    "failover": {
                        "service": traefik_service(active, svc),
                        "fallback": traefik_service(other(active), svc),
                    }
                }
        else:
            api, web, tag = "cerniq-canary", "cerniq-web-canary", []
            for name, svc in ((api, "api"), (web, "web")):
                services[name] = {
                    "weighted": {
                        "healthCheck": {},  # an unhealthy color gets no share of the traffic
                        "services": [
                            {"name": traefik_service(active, svc), "weight": 100 - canary_weight},
                            {"name": traefik_service(other(active), svc), "weight": canary_weight},
                        ],
                    }
                }
        color_mw = [f"cerniq-color-{c}" for c in tag]
        routers[ROUTER] = _router("PathPrefix(`/`)", api, PRIORITY, color_mw)
        routers[WEB_ROUTER] = _router(
            "PathPrefix(`/web`)", web, PRIORITY + 1, ["cerniq-web-strip", *color_mw]
        )
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def _router(rule: str, service: str, priority: int, middlewares: list[str]) -> dict:
    router = {"rule": rule, "entryPoints": ["web"], "priority": priority, "service": service}
    if middlewares:
        router["middlewares"] = middlewares
    return router


def render(config: dict) -> str:
    return compose.dump(config)


def dynamic_path(s: Settings) -> str:
    return f"{s.app_root}/traefik/dynamic/{DYNAMIC_FILE}"


# -- on the hosts: what Traefik routes, a change of it written and confirmed ----------------------
def routed_service(host) -> str | None:
    """What Traefik's public router on HOST names now (None: no blue-green router)."""
    router = traefik.api_get(host, f"http/routers/{ROUTER}@file")
    return router.get("service") if isinstance(router, dict) else None


def describe_routed(host, routed: str | None) -> str:
    """What HOST's public router names, with a canary's weights (`cerniq-canary (blue 90%,
    green 10%)`)."""
    if routed != "cerniq-canary":
        return routed or "no blue-green router"
    doc = _service_doc(host, "cerniq-canary") or {}
    weights = (doc.get("weighted") or {}).get("services") or []
    return f"{routed} (" + ", ".join(f"{w.get('name')} {w.get('weight')}%" for w in weights) + ")"


def _service_doc(host, name: str) -> dict | None:
    doc = traefik.api_get(host, f"http/services/{name}@file")
    return doc if isinstance(doc, dict) else None


def routing_label(active: str | None, weight: int | None) -> str:
    """What the public router names for a routing (what confirm_routing waits for)."""
    if active is None:
        return "no blue-green router"
    return routed_name(active) if weight is None else "cerniq-canary"


def apply_routing(ctx: Context, active: str | None, weight: int | None) -> float:
    """Write the routing on every app host (atomic rename), then confirm it on each.

    Each host is recorded in `ctx.facts["written"]` before its file is replaced, so a failure
    or an exception at any point leaves switch_back the exact set of hosts to rewrite."""
    s, start = ctx.settings, time.monotonic()
    text = render(dynamic_config(active, weight))
    written = ctx.facts.setdefault("written", {})
    for spec, host in _pairs(ctx):
        written[spec.name] = routing_label(active, weight)
        hosts.write_file(host, dynamic_path(s), text)
        ctx.note(f"{spec.name}: {ROUTER} -> {written[spec.name]} written")
    for spec, host in _pairs(ctx):
        confirm_routing(s, spec, host, active, weight)
    return time.monotonic() - start


def confirm_routing(
    s: Settings,
    spec: HostSpec,
    host,
    active: str | None,
    weight: int | None,
    timeout: float | None = None,
) -> None:
    """Traefik's API names the expected service, and the host's entrypoint answers from it."""
    want = None if active is None else routing_label(active, weight)
    timeout = CONFIRM_SECONDS if timeout is None else timeout
    traefik.wait_for(
        f"Traefik on {spec.name} to route {want or 'no blue-green router'}",
        lambda: routed_service(host) == want,
        timeout,
        interval=0.05,
    )
    if active is None or weight is not None:
        return
    url = host_url(s, spec)
    traefik.wait_for(
        f"{url} to answer from {active}",
        lambda: all(_answers_from(f"{url}{path}", active) for path in ("/health", "/web/health")),
        timeout,
        interval=0.05,
    )


def _answers_from(url: str, color: str) -> bool:
    try:
        r = requests.get(url, timeout=3)
    except requests.RequestException:
        return False
    return r.status_code == 200 and r.headers.get(COLOR_HEADER) == color
