"""`invoke maintenance on|off`: a maintenance page for the app's routes (Kamal's `app
maintenance` / `app live`), through Traefik on every app host.

Traefik has no static-response middleware. What it does have, and what this uses (measured on
the testbed's Traefik 3.7): a router to a service whose `servers` list is empty answers 503;
the `errors` middleware replaces the body of a 503 by a page fetched from another service
(keeping the 503); the `headers` middleware adds Retry-After to that answer. So `on`:

  1. the page (the message, HTML-escaped) is written to `{app_root}/maintenance/index.html` and
     a page server started beside the app (busybox `httpd` in the `maintenance_image`, compose
     project `<compose_project>-maintenance`, reachable by Traefik as `cerniq-maintenance:80`);
  2. `traefik/dynamic/maintenance.yml` is written atomically (temporary name, rename; as
     blue-green writes active.yml): router `cerniq-maintenance`, PathPrefix `/` but not
     `/health` (the balancer's and the deploy's health checks keep reaching the app), priority
     above every router of ours (rolling, blue-green, previews);
  3. confirmed on each host through Traefik's API (the router enabled) and through the host's
     entrypoint (`/` answers 503 with `X-Cerniq-Maintenance: on` and Retry-After).
`off` removes the file, confirms the same two ways that the router is gone, then stops the page
server. Both run through the one procedure runner (lock, audit line, progress).

A page server rather than a fixed Traefik answer: without it Traefik's 503 says only "Service
Unavailable"; a local plugin could answer by itself but needs a change of Traefik's static
configuration (a restart of every host's Traefik) and Go source mounted into it.
"""

from __future__ import annotations

import html
import time

import requests

from cerniq_ops import compose, hosts, traefik
from cerniq_ops.clock import now_utc
from cerniq_ops.confirm import require
from cerniq_ops.deploy import host_url
from cerniq_ops.deploy_inputs import number
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, Report, run, step
from cerniq_ops.settings import HostSpec, Settings

ROUTER = "cerniq-maintenance"
UNAVAILABLE = "cerniq-maintenance-503"  # a service without servers: Traefik answers 503
PAGE_SERVICE = "cerniq-maintenance-page"
PAGE_ALIAS = "cerniq-maintenance"  # the page server on the shared network
HEADERS, PAGE = "cerniq-maintenance-headers", "cerniq-maintenance-page"
PRIORITY = 100_000  # above blue-green (10_000), its previews (20_000) and the docker routers
MARKER_HEADER = "X-Cerniq-Maintenance"
DYNAMIC_FILE = "maintenance.yml"
DEFAULT_MESSAGE = "Cerniq is down for maintenance. We will be back shortly."
DEFAULT_RETRY_AFTER = 300
MAX_MESSAGE = 500
CONFIRM_SECONDS = 30.0


# -- pure builders ---------------------------------------------------------------------------
def dynamic_config(retry_after: int) -> dict:
    """`maintenance.yml`: the top-priority router answering 503 with the page."""
    return {
        "http": {
            "routers": {
                ROUTER: {
                    "rule": "PathPrefix(`/`) && !Path(`/health`)",
                    "entryPoints": ["web"],
                    "priority": PRIORITY,
                    "service": UNAVAILABLE,
                    "middlewares": [HEADERS, PAGE],
                }
            },
            "services": {
                UNAVAILABLE: {"loadBalancer": {"servers": []}},
                PAGE_SERVICE: {"loadBalancer": {"servers": [{"url": f"http://{PAGE_ALIAS}:80"}]}},
            },
            "middlewares": {
                HEADERS: {
                    "headers": {
                        "customResponseHeaders": {
                            "Retry-After": str(retry_after),
                            "Cache-Control": "no-store",
                            MARKER_HEADER: "on",
                        }
                    }
                },
                PAGE: {"errors": {"status": ["503"], "service": PAGE_SERVICE, "query": "/"}},
            },
        }
    }


def render(retry_after: int) -> str:
    return compose.dump(dynamic_config(retry_after))


def page_html(message: str, since: str) -> str:
    """The maintenance page: MESSAGE (escaped: it is the operator's text) and since when."""
    text = html.escape(message)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><title>Maintenance - Cerniq</title></head>\n'
        f"<body><h1>Maintenance</h1><p>{text}</p><p><small>Since {since}</small></p></body>"
        "</html>\n"
    )


def page_project(s: Settings) -> str:
    return f"{s.compose_project}-maintenance"


def page_compose(s: Settings) -> str:
    """The page server: busybox httpd serving `{app_root}/maintenance` on the shared network."""
    doc = {
        "version": "3.7",
        "services": {
            "page": {
                "image": page_image(s),
                "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
                "volumes": [f"{s.app_root}/maintenance:/www:ro"],
                "restart": "unless-stopped",
                "networks": {"default": {"aliases": [PAGE_ALIAS]}},
            }
        },
        "networks": {"default": {"external": True, "name": compose.network_name(s)}},
    }
    return compose.dump(doc)


def page_image(s: Settings) -> str:
    return f"{s.registry}/{s.image_prefix}/{s.maintenance_image}"


def dynamic_path(s: Settings) -> str:
    return f"{s.app_root}/traefik/dynamic/{DYNAMIC_FILE}"


def page_path(s: Settings) -> str:
    return f"{s.app_root}/maintenance/index.html"


def compose_path(s: Settings) -> str:
    return f"{s.app_root}/docker-compose.maintenance.yml"


def page_stack(s: Settings) -> compose.Stack:
    return compose.Stack(tuple(s.compose_command), page_project(s), compose_path(s))


def validate(options: dict) -> dict:
    """The message and Retry-After, checked: BadInput (exit 2) before anything connects."""
    message = options.get("message")
    message = DEFAULT_MESSAGE if message in (None, "") else str(message).strip()
    if not message or len(message) > MAX_MESSAGE or any(ord(ch) < 32 for ch in message):
        raise BadInput(f"invalid --message: one line of 1 to {MAX_MESSAGE} printable characters")
    retry = number(
        "retry-after", options.get("retry_after"), kind=int, minimum=1, default=DEFAULT_RETRY_AFTER
    )
    return {"message": message, "retry_after": int(retry)}


# -- reading hosts ---------------------------------------------------------------------------
def router_enabled(host) -> bool | None:
    """True: Traefik on HOST routes the maintenance router; False: it knows it but could not
    enable it; None: it has no such router."""
    doc = traefik.api_get(host, f"http/routers/{ROUTER}@file")
    if not isinstance(doc, dict):
        return None
    return doc.get("status") == "enabled"


def answers_maintenance(url: str) -> bool | None:
    """True: URL answers the maintenance page; False: it answers something else; None: no
    answer at all."""
    try:
        r = requests.get(url, timeout=3)
    except requests.RequestException:
        return None
    return r.status_code == 503 and r.headers.get(MARKER_HEADER) == "on"


def confirm(s: Settings, spec: HostSpec, host, on: bool, timeout: float = CONFIRM_SECONDS):
    """Traefik's API has (on) or has no (off) the router, and the entrypoint agrees."""
    want = True if on else None
    traefik.wait_for(
        f"Traefik on {spec.name} to {'route' if on else 'drop'} {ROUTER}",
        lambda: router_enabled(host) is want,
        timeout,
        interval=0.05,
    )
    url = f"{host_url(s, spec)}/"
    traefik.wait_for(
        f"{url} to answer {'the maintenance page' if on else 'without it'}",
        lambda: answers_maintenance(url) is on,
        timeout,
        interval=0.05,
    )


def status(host, s: Settings) -> dict:
    """What HOST says about maintenance: the file, since when, and what Traefik routes."""
    config = hosts.read_file(host, dynamic_path(s))
    since = hosts.read_file(host, f"{s.app_root}/maintenance/since")
    try:
        routed = router_enabled(host)
    except StepFailed as exc:
        routed = f"unknown ({exc})"
    return {
        "file": config is not None,
        "since": (since or "").strip() or None,
        "traefik": routed,
    }


# -- steps -----------------------------------------------------------------------------------
@step(offline=True)
def check_inputs(ctx: Context) -> str:
    s = ctx.settings
    if ctx.procedure == "maintenance.on":
        ctx.options.update(validate(ctx.options))
    how = "no confirmation needed"
    if s.confirm_phrase:
        what = f"{s.env.upper()} MAINTENANCE {'ON' if ctx.procedure.endswith('on') else 'OFF'}"
        how = require(s.confirm_phrase, ctx.options.get("confirm"), what)
    return how


def _pairs(ctx: Context):
    return [(spec, ctx.host(spec)) for spec in ctx.settings.app_hosts]


@step()
def start_page_server(ctx: Context) -> str:
    """The page (message, since when) and its server on every app host."""
    s, since = ctx.settings, now_utc()
    page = page_html(ctx.options["message"], since)
    for _, host in _pairs(ctx):
        hosts.write_file(host, page_path(s), page)
        hosts.write_file(
            host, f"{s.app_root}/maintenance/since", f"{since} {ctx.options['message']}\n"
        )
        hosts.write_file(host, compose_path(s), page_compose(s))
        hosts.sh(host, compose.ensure_network(s))
        hosts.sh(host, page_stack(s).cmd("up", "-d", "--remove-orphans"), timeout=300)
    return f"page server {page_project(s)} up on {len(s.app_hosts)} host(s)"


@step()
def route_to_page(ctx: Context) -> str:
    """maintenance.yml written (atomic rename) on every app host, then confirmed on each."""
    s, start = ctx.settings, time.monotonic()
    text = render(ctx.options["retry_after"])
    for spec, host in _pairs(ctx):
        hosts.write_file(host, dynamic_path(s), text)
        ctx.note(f"{spec.name}: {ROUTER} written")
    for spec, host in _pairs(ctx):
        confirm(s, spec, host, True)
    seconds = time.monotonic() - start
    return f"{len(s.app_hosts)} host(s) answer 503 with the page ({seconds:.2f}s to confirm)"


@step()
def route_to_app(ctx: Context) -> str:
    """maintenance.yml removed on every app host (a rename-free delete: Traefik reloads the
    folder without it), then confirmed on each."""
    s, start = ctx.settings, time.monotonic()
    for spec, host in _pairs(ctx):
        hosts.sh(host, ["rm", "-f", dynamic_path(s)])
        ctx.note(f"{spec.name}: {ROUTER} removed")
    for spec, host in _pairs(ctx):
        confirm(s, spec, host, False)
    seconds = time.monotonic() - start
    return f"{len(s.app_hosts)} host(s) route the app again ({seconds:.2f}s to confirm)"


@step()
def stop_page_server(ctx: Context) -> str:
    s = ctx.settings
    for _, host in _pairs(ctx):
        if hosts.read_file(host, compose_path(s)) is not None:
            hosts.sh(
                host, page_stack(s).cmd("down", "--remove-orphans", "--timeout", "1"), timeout=300
            )
        hosts.sh(host, ["rm", "-rf", f"{s.app_root}/maintenance", compose_path(s)])
    return f"{page_project(s)} stopped on {len(s.app_hosts)} host(s)"


def remove_router(ctx: Context) -> str:
    """On a failure of `on`: the router file removed again, so no host is left half in
    maintenance (the page server stays; `maintenance off` stops it)."""
    if ctx.state is None:
        return "nothing was changed"
    for _, host in _pairs(ctx):
        hosts.sh(host, ["rm", "-f", dynamic_path(ctx.settings)])
    return f"{ROUTER} removed from every app host: the app is served"


ON = (check_inputs, start_page_server, route_to_page)
OFF = (check_inputs, route_to_app, stop_page_server)


def turn_on(ctx: Context) -> Report:
    return run(ON, ctx, on_failure=(remove_router,))


def turn_off(ctx: Context) -> Report:
    return run(OFF, ctx)
