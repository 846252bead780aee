"""After a failure: switch_back, the failure hook that routes the old color again on every
host the run wrote, and the failure line's account of what each app host routes now.
"""

from __future__ import annotations

from cerniq_ops import hosts
from cerniq_ops.bluegreen.colors import _pairs
from cerniq_ops.bluegreen.markers import MARKER, write_markers_on
from cerniq_ops.bluegreen.pending import remove_pending
from cerniq_ops.bluegreen.routing import (
    DYNAMIC_FILE,
    ROUTER,
    confirm_routing,
    describe_routed,
    dynamic_config,
    dynamic_path,
    render,
    routed_service,
    routing_label,
)
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context


# -- failure hooks -------------------------------------------------------------------------------
def switch_back(ctx: Context) -> str:
    """After a failure (any exception) once a change of routing began: the old color routed
    again on every host this run wrote (`written`), and its markers back where this run wrote
    them (`markers_written`). Each host on its own: one that fails does not stop the others,
    and the outcome names each host and what it routes. The run record goes only when every
    host was put back (else the next run finds it and settles what is left)."""
    s, old = ctx.settings, ctx.facts.get("active")
    back = routing_label(old, None)
    if not ctx.facts.get("switch_started"):
        return f"nothing to switch back: traffic never left {back}"
    written = ctx.facts.get("written") or {}
    marked = ctx.facts.get("markers_written") or set()
    pairs = [(spec, host) for spec, host in _pairs(ctx) if spec.name in written]
    failed: dict[str, str] = {}
    text = render(dynamic_config(old))
    for spec, host in pairs:
        try:
            hosts.write_file(host, dynamic_path(s), text)
        except Exception as exc:  # noqa: BLE001 - every host is tried, each failure named
            failed[spec.name] = f"writing {DYNAMIC_FILE} failed: {_first_line(exc)}"
    for spec, host in pairs:
        if spec.name in failed:
            continue
        try:
            confirm_routing(s, spec, host, old, None)
        except Exception as exc:  # noqa: BLE001
            failed[spec.name] = f"not confirmed: {_first_line(exc)}"
    for spec, host in _pairs(ctx):
        if spec.name not in marked:
            continue
        try:
            if old:
                write_markers_on(host, s, old, ctx.facts.get("previous_version"), ctx.version)
            else:  # a first rollout: back to no marker at all
                hosts.sh(host, ["rm", "-f", f"{s.app_root}/{MARKER}"])
        except Exception as exc:  # noqa: BLE001
            failed.setdefault(spec.name, f"markers not restored: {_first_line(exc)}")
    if not failed:
        try:
            remove_pending(ctx)
        except Exception as exc:  # noqa: BLE001 - the next run settles it
            ctx.note(f"run record not removed ({_first_line(exc)}): the next run settles it")
    restored = [spec.name for spec, _ in pairs if spec.name not in failed]
    untouched = [spec.name for spec in s.app_hosts if spec.name not in written]
    parts = []
    if restored and not failed:
        parts.append(f"switched back: {ROUTER} routes {back} again on {', '.join(restored)}")
    elif restored:
        parts.append(f"switched back {', '.join(restored)} ({ROUTER} routes {back} again)")
    for name, why in failed.items():
        parts.append(f"could NOT switch back {name} ({why}): it routes {_routes_now(ctx, name)}")
    if untouched:
        parts.append(f"{', '.join(untouched)} never switched (routes {back})")
    ctx.facts["switched_back"] = not failed
    ctx.facts["switch_back"] = "; ".join(parts) or "nothing was written"
    if failed:
        raise StepFailed(ctx.facts["switch_back"])  # the runner prints it as the hook's failure
    return ctx.facts["switch_back"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _routes_now(ctx: Context, name: str) -> str:
    try:
        return describe_routed(ctx.host(name), routed_service(ctx.host(name)))
    except Exception as exc:  # noqa: BLE001 - the report must not fail
        return f"unknown ({_first_line(exc)})"


def where_traffic_goes(ctx: Context) -> str:
    """For the failure line: how the switch back went, and what each app host routes now."""
    names = [spec.name for spec in ctx.settings.app_hosts] if ctx.state else []
    parts = [f"{name} routes {_routes_now(ctx, name)}" for name in names]
    ctx.facts["routing"] = parts
    done = ctx.facts.get("switch_back")
    return (f"{done}; " if done and ctx.facts.get("switched_back") is False else "") + (
        "traffic: " + ", ".join(parts)
    )
