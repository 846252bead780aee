"""`invoke bluegreen.*`: the seed's blue-green-deploy.sh (7.3) as named steps, done correctly,
with Argo Rollouts' canary steps and post-switch analysis on top.

Two colors per app host, each its own compose project (`cerniq-blue`, `cerniq-green`), file
(`docker-compose.<color>.yml`) and env file (`.env.<color>`); the api of each color is
published on the color's port (64001 / 64002, the seed's health check) and reachable by Traefik
as `http://api-<color>:80` on the shared network. Traefik routes the public entrypoint through
the file provider, `{app_root}/traefik/dynamic/active.yml`:

  routers  cerniq-app (PathPrefix `/`), cerniq-web (PathPrefix `/web`): the active color, or the
           weighted `cerniq-canary` / `cerniq-web-canary` services during a canary; a priority
           above the rolling deploy's docker-provider routers, so the file config wins.
           cerniq-preview-<color>[-web]: requests with `X-Cerniq-Color: <color>` reach that color
           (Argo's preview service): the smoke suite tests the idle color through Traefik.
  services cerniq-<color>, cerniq-web-<color>: one server each, health-checked every second.

A switch writes that file atomically (temp name not ending in .yml, rename), then confirms it on
every app host through Traefik's API (the router names the new service) and through the host's
public entrypoint (responses carry `X-Cerniq-Color: <new>` and the new version). The marker
`active-env` (blue|green) is written after the switch, like the seed. Any failure after the
switch switches back. The old color keeps running for a quick switch back.

Where the seed is unsafe we do what it means: the version is validated, never pasted in a shell;
the health loop's timeout fails the deploy (the seed's loop falls through to the switch); the
Traefik file is never truncated in place; the seed's "Restore Traefik config" TODO is done.

The package, one concept a file: colors.py (each color's names, port, project and files),
routing.py (active.yml, written then confirmed), markers.py (active-env and the version
markers), pending.py (the run record; what a re-run does with what a killed run left),
containers.py (a color's containers), analysis.py (traffic judged by the thresholds),
options.py, steps.py, failure.py (switch_back), procedures.py (DEPLOY, SWITCH, CANARY...;
rollback's blue-green path) and overview.py (status). Callers use what this file re-exports:
`from cerniq_ops import bluegreen; bluegreen.DEPLOY`.
"""

from __future__ import annotations

from cerniq_ops.bluegreen.analysis import Traffic, analyse
from cerniq_ops.bluegreen.colors import (
    color_compose,
    color_documents,
    color_stack,
    other,
    routed_name,
)
from cerniq_ops.bluegreen.containers import color_problems, stale_containers, surplus_containers
from cerniq_ops.bluegreen.failure import switch_back, where_traffic_goes
from cerniq_ops.bluegreen.markers import MARKER, parse_marker
from cerniq_ops.bluegreen.options import canary_steps, validate_options
from cerniq_ops.bluegreen.overview import status
from cerniq_ops.bluegreen.pending import (
    PENDING,
    Pending,
    Recovery,
    markers_to_repair,
    parse_pending,
    pending_text,
    plan_recovery,
    remove_existing,
    same_request,
    temp_paths,
)
from cerniq_ops.bluegreen.procedures import (
    CANARY,
    CANARY_IDLE,
    DEPLOY,
    HOOKS,
    STOP_IDLE,
    SWITCH,
    rollback_path,
    run_procedure,
)
from cerniq_ops.bluegreen.routing import dynamic_config, dynamic_path, render, routed_service
from cerniq_ops.bluegreen.steps import (
    canary,
    check_idle_ready,
    check_inputs,
    close_run,
    deploy_idle,
    prepare_traefik,
    read_active,
    recover,
    smoke_idle,
    stop_hint,
    switch_traffic,
    update_marker,
)

__all__ = [
    "CANARY",
    "CANARY_IDLE",
    "DEPLOY",
    "HOOKS",
    "MARKER",
    "PENDING",
    "Pending",
    "Recovery",
    "STOP_IDLE",
    "SWITCH",
    "Traffic",
    "analyse",
    "canary",
    "canary_steps",
    "check_idle_ready",
    "check_inputs",
    "close_run",
    "color_compose",
    "color_documents",
    "color_problems",
    "color_stack",
    "deploy_idle",
    "dynamic_config",
    "dynamic_path",
    "markers_to_repair",
    "other",
    "parse_marker",
    "parse_pending",
    "pending_text",
    "plan_recovery",
    "prepare_traefik",
    "read_active",
    "recover",
    "remove_existing",
    "render",
    "rollback_path",
    "routed_name",
    "routed_service",
    "run_procedure",
    "same_request",
    "smoke_idle",
    "stale_containers",
    "status",
    "stop_hint",
    "surplus_containers",
    "switch_back",
    "switch_traffic",
    "temp_paths",
    "update_marker",
    "validate_options",
    "where_traffic_goes",
]
