"""The blue-green procedures, each a tuple of steps run by the one runner (lock, audit,
failure hooks), and the blue-green part of `invoke rollback`, run inside rollback's own run.
"""

from __future__ import annotations

from cerniq_ops import hosts
from cerniq_ops.bluegreen.colors import _pairs
from cerniq_ops.bluegreen.containers import color_version
from cerniq_ops.bluegreen.failure import switch_back, where_traffic_goes
from cerniq_ops.bluegreen.markers import MARKER
from cerniq_ops.bluegreen.pending import read_pending, settle_unfinished
from cerniq_ops.bluegreen.steps import (
    canary,
    check_idle_ready,
    check_inputs,
    check_scale_down_delay,
    check_traefik,
    close_run,
    compare_versions,
    confirm_change,
    deploy_idle,
    post_switch_analysis,
    prepare_traefik,
    read_active,
    recover,
    smoke_idle,
    stop_idle,
    switch_traffic,
    update_marker,
    verify_switch,
    wait_idle_healthy,
)
from cerniq_ops.procedure import Context, Report, run
from cerniq_ops.steps import notify_deployment, notify_failure, pull_images, validate

# -- procedures ----------------------------------------------------------------------------------
_PREPARE = (
    recover,
    read_active,
    check_traefik,
    compare_versions,
    pull_images,
    deploy_idle,
    wait_idle_healthy,
    prepare_traefik,
    smoke_idle,
)
_FINISH = (update_marker, verify_switch, post_switch_analysis, notify_deployment, close_run)
DEPLOY = (check_inputs, validate, *_PREPARE, switch_traffic, *_FINISH)
SWITCH = (
    check_inputs,
    confirm_change,
    recover,
    read_active,
    check_traefik,
    check_idle_ready,
    prepare_traefik,
    smoke_idle,
    switch_traffic,
    *_FINISH,
)
CANARY = (check_inputs, validate, *_PREPARE, canary, *_FINISH)
CANARY_IDLE = (
    check_inputs,
    confirm_change,
    recover,
    read_active,
    check_traefik,
    check_idle_ready,
    prepare_traefik,
    smoke_idle,
    canary,
    *_FINISH,
)
STOP_IDLE = (
    check_inputs,
    confirm_change,
    recover,
    read_active,
    check_traefik,
    check_scale_down_delay,
    stop_idle,
)
HOOKS = (switch_back, notify_failure)


def run_procedure(steps, ctx: Context) -> Report:
    """Run a blue-green procedure through the one runner: lock, audit, hooks, report."""
    ctx.options.setdefault("skip_ci_check", True)  # the seed's 7.3 does not gate on CI
    return run(steps, ctx, on_failure=HOOKS, describe_state=where_traffic_goes)


# -- used by `invoke rollback` -------------------------------------------------------------------
def rollback_path(ctx: Context) -> str | None:
    """How `invoke rollback` reaches its target (ctx.version) on a blue-green environment: switch
    back to the idle color when it still runs the target and is healthy (the fast path), else
    deploy the target to the idle color and switch. None when the environment is not blue-green.
    Runs inside rollback's own run (its lock, audit and failure hooks)."""
    s, target = ctx.settings, ctx.version
    marked = any(hosts.read_file(host, f"{s.app_root}/{MARKER}") for _, host in _pairs(ctx))
    if not marked and read_pending(ctx) is None:
        return None
    ctx.note(f"recover: {settle_unfinished(ctx, resume=False)}")
    read_active(ctx)
    check_traefik(ctx)
    idle = ctx.facts["idle"]
    running = [color_version(s, host, spec, idle) for spec, host in _pairs(ctx)]
    if all(version == target and h.ok for version, h in running):
        steps = (
            check_idle_ready,
            prepare_traefik,
            smoke_idle,
            switch_traffic,
            update_marker,
            verify_switch,
        )
        how = f"switched back to {idle}, which still runs {target}"
    else:
        ctx.facts["previous_version"] = ctx.facts.get("from_version")
        steps = (
            pull_images,
            deploy_idle,
            wait_idle_healthy,
            prepare_traefik,
            smoke_idle,
            switch_traffic,
            update_marker,
            verify_switch,
        )
        how = f"deployed {target} to {idle} and switched to it"
    try:
        for each in (*steps, close_run):
            ctx.note(f"{each.__name__}: {each(ctx) or 'ok'}")
    except BaseException:
        if ctx.facts.get("switch_started") and not ctx.facts.get("switched"):
            try:  # a switch cut short: every host back on one color (rollback has no such hook)
                ctx.note(f"switch_back: {switch_back(ctx)}")
            except Exception as exc:  # noqa: BLE001 - the original failure is what is raised
                ctx.note(f"switch_back failed too: {exc}")
        raise
    return how
