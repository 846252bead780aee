"""The run record of a change of routing not finished yet (`bluegreen.pending` on every app
host), and what a later run does with what a killed one left: its temporary files removed, its
change resumed, kept or put back (plan_recovery), the markers made to follow what Traefik routes.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cerniq_ops import hosts
from cerniq_ops.bluegreen.colors import COLORS, _pairs, other, routed_name
from cerniq_ops.bluegreen.containers import color_version
from cerniq_ops.bluegreen.markers import MARKER, SWITCHED_AT, VERSION_MARKERS, write_markers
from cerniq_ops.bluegreen.routing import (
    DYNAMIC_FILE,
    apply_routing,
    describe_routed,
    routed_service,
)
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context
from cerniq_ops.settings import Settings

PENDING = "bluegreen.pending"  # the run record of a change of routing not finished yet
TEMP_SUFFIX = ".tmp-cerniq"  # hosts.write_file's temporary names: .<name>.tmp-cerniq


# -- pure: the run record of an unfinished change, and what a re-run does with it ----------------
@dataclass(frozen=True)
class Pending:
    """Written on every app host before a run first changes the routing, removed when the run
    ends (done, or switched back everywhere). Found by a later run: an earlier one was killed."""

    procedure: str
    from_color: str | None  # what Traefik routed before (None: a first rollout)
    to: str
    version: str | None  # what TO runs
    previous: str | None  # what FROM_COLOR runs
    initial: bool = False


def pending_text(p: Pending) -> str:
    return json.dumps(asdict(p), sort_keys=True) + "\n"


def parse_pending(text: str | None) -> Pending | None:
    """The record, or None when absent or unreadable (an unreadable one tells nothing)."""
    if not text:
        return None
    try:
        p = Pending(**json.loads(text))
    except (json.JSONDecodeError, TypeError):
        return None
    if p.to not in COLORS or p.from_color not in (*COLORS, None):
        return None
    return p


def same_request(p: Pending, procedure: str, version: str | None, to: str | None) -> bool:
    """Is this run the killed one again (same command, same target)? Then it resumes it."""
    if p.procedure != procedure:
        return False
    if to is not None and to != p.to:
        return False
    return version is None or version == p.version


@dataclass(frozen=True)
class Recovery:
    """What a run does with the state an earlier, killed run left (see plan_recovery)."""

    action: str  # resume | keep | put_back
    color: str | None  # the color every host routes after the recovery
    hosts: tuple[str, ...] = ()  # put_back: the hosts whose routing is rewritten


def plan_recovery(p: Pending, routed: Mapping[str, str | None], same: bool) -> Recovery:
    """What Traefik routes is what users see: when the killed run's switch reached every host
    it stands (RESUME it when this run is the same request: markers, checks and the post-switch
    watch still to do; else KEEP it and make the markers follow). Anything less (some hosts, a
    canary's weighted split) is PUT BACK to the color routed before, and the run starts over."""
    if routed and all(r == routed_name(p.to) for r in routed.values()):
        return Recovery("resume" if same else "keep", p.to)
    before = routed_name(p.from_color) if p.from_color else None
    return Recovery(
        "put_back", p.from_color, tuple(name for name, r in routed.items() if r != before)
    )


def temp_paths(s: Settings) -> list[str]:
    """The temporary names a killed write of ours can leave (Traefik ignores them: no .yml)."""
    names = [MARKER, SWITCHED_AT, *VERSION_MARKERS, PENDING]
    return [
        *(f"{s.app_root}/.{name}{TEMP_SUFFIX}" for name in names),
        f"{s.app_root}/traefik/dynamic/.{DYNAMIC_FILE}{TEMP_SUFFIX}",
    ]


def remove_existing(paths: list[str]) -> str:
    """Shell text: remove each of PATHS that exists, printing its name."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return f'for p in {quoted}; do if [ -e "$p" ]; then rm -f "$p" && echo "$p"; fi; done; true'


# -- on the hosts: the record written, read, removed ----------------------------------------------
def _pending_path(s: Settings) -> str:
    return f"{s.app_root}/{PENDING}"


def read_pending(ctx: Context) -> Pending | None:
    for _, host in _pairs(ctx):
        found = parse_pending(hosts.read_file(host, _pending_path(ctx.settings)))
        if found:
            return found
    return None


def remove_pending(ctx: Context) -> None:
    for _, host in _pairs(ctx):
        hosts.sh(host, ["rm", "-f", _pending_path(ctx.settings)])


def begin_change(ctx: Context) -> None:
    """Before the first change of routing: the run record on every app host (a run killed
    from here on is recognised, and resumed or put back, by the next one)."""
    s, old, new = ctx.settings, ctx.facts["active"], ctx.facts["idle"]
    record = Pending(
        ctx.procedure,
        old,
        new,
        ctx.version,
        ctx.facts.get("previous_version"),
        bool(ctx.options.get("initial")),
    )
    ctx.facts["switch_started"] = True  # from here on, a failure switches back
    for _, host in _pairs(ctx):
        hosts.write_file(host, _pending_path(s), pending_text(record))


# -- a re-run settles what a killed run left ------------------------------------------------------
def settle_unfinished(ctx: Context, *, resume: bool) -> str:
    """`recover`; RESUME False: never resume the earlier run (another procedure, e.g. rollback,
    only wants a consistent state to start from)."""
    s = ctx.settings
    if ctx.dry_run:
        return "would remove temporary files and settle an unfinished run's routing"
    removed = 0
    for spec, host in _pairs(ctx):
        _, out, _ = hosts.sh(host, remove_existing(temp_paths(s)))
        for path in out.split():
            removed += 1
            ctx.repaired(f"{spec.name}: removed {path}, a write cut short")
    pending = read_pending(ctx)
    if pending is None:
        followed = _markers_follow_traefik(ctx)
        return f"no unfinished run; {removed} temporary file(s) removed" + (
            f"; {followed}" if followed else ""
        )
    routed, shown = {}, []
    for spec, host in _pairs(ctx):
        try:
            routed[spec.name] = routed_service(host)
            shown.append(f"{spec.name} routes {describe_routed(host, routed[spec.name])}")
        except StepFailed as exc:
            raise StepFailed(
                f"{exc}: an unfinished {pending.procedure} to {pending.to} cannot be settled "
                "while Traefik is down; start Traefik and run again"
            ) from None
    same = resume and same_request(pending, ctx.procedure, ctx.version, ctx.options.get("to"))
    plan = plan_recovery(pending, routed, same)
    seen = ", ".join(shown)
    was = f"an unfinished {pending.procedure} ({pending.from_color or 'none'} -> {pending.to})"
    if plan.action == "resume":
        ctx.version = pending.version
        ctx.facts.update(
            active=pending.from_color,
            idle=pending.to,
            previous_version=pending.previous,
            resumed=True,
            switch_started=True,
            written={name: routed_name(pending.to) for name in routed},
        )
        ctx.repaired(
            f"{was} had switched every host ({seen}): resuming it (markers, checks, the watch)"
        )
        return f"resuming {pending.procedure}: {pending.to} ({pending.version}) is routed"
    if plan.action == "put_back":
        back = routed_name(plan.color) if plan.color else "no blue-green router"
        if plan.hosts:
            apply_routing(ctx, plan.color, None)
            ctx.facts.pop("written", None)
            ctx.repaired(f"{was} left {seen}: put back to {back} on every host")
        else:
            ctx.repaired(f"{was} died before it changed the routing ({seen})")
        color, version, previous = plan.color, pending.previous, pending.version
    else:
        ctx.repaired(f"{was} had switched every host ({seen}): it stands")
        color, version, previous = plan.color, pending.version, pending.previous
    _settle_markers(ctx, color, version, previous, was)
    remove_pending(ctx)
    return f"settled {was}: {routed_name(color) if color else 'no router'} everywhere"


def markers_to_repair(markers: Mapping[str, str | None], routed: Mapping[str, str | None]):
    """The color the markers must say when they disagree with a Traefik that routes one color
    everywhere (what users see), else None. Only markers that are blue, green or absent, with
    at least one present, are repaired; anything else stays a refusal (read_active)."""
    colors = {c for c in COLORS for r in routed.values() if r == routed_name(c)}
    if len(colors) != 1 or not all(r in map(routed_name, COLORS) for r in routed.values()):
        return None
    (color,) = colors
    values = set(markers.values())
    if not values <= {*COLORS, None} or values <= {None} or values == {color}:
        return None
    return color


def _markers_follow_traefik(ctx: Context) -> str | None:
    """No run record, yet markers that disagree with Traefik (a run of an older release killed
    between its switch and its markers, or a hand edit): the markers follow what Traefik routes."""
    s, markers, routed = ctx.settings, {}, {}
    for spec, host in _pairs(ctx):
        text = (hosts.read_file(host, f"{s.app_root}/{MARKER}") or "").strip() or None
        markers[spec.name] = text
        try:
            routed[spec.name] = routed_service(host)
        except StepFailed:
            return None  # check_traefik says it, with the way out
    color = markers_to_repair(markers, routed)
    if color is None:
        return None
    spec, host = _pairs(ctx)[0]
    version, h = color_version(s, host, spec, color)
    previous, _ = color_version(s, host, spec, other(color))
    write_markers(ctx, color, version if h.ok else None, previous)
    seen = ", ".join(f"{n} {MARKER}={v or 'absent'}" for n, v in markers.items())
    ctx.repaired(f"markers ({seen}) set to {color}, which Traefik routes on every host")
    ctx.facts.pop("markers_written", None)
    return f"markers follow Traefik: {color}"


def _settle_markers(
    ctx: Context, color: str | None, version: str | None, previous: str | None, was: str
) -> None:
    """Markers that follow what Traefik routes (COLOR running VERSION)."""
    s, wrong = ctx.settings, []
    for spec, host in _pairs(ctx):
        marker = (hosts.read_file(host, f"{s.app_root}/{MARKER}") or "").strip() or None
        current = (hosts.read_file(host, f"{s.app_root}/current-version") or "").strip() or None
        if marker != color or (color and version and current != version):
            wrong.append(f"{spec.name} {MARKER}={marker or 'absent'} current-version={current}")
    if not wrong:
        return
    if color:
        write_markers(ctx, color, version, previous)
        ctx.facts.pop("markers_written", None)  # settled, not this run's change
    else:  # a first rollout put back: no marker at all, as before it
        for _, host in _pairs(ctx):
            hosts.sh(host, ["rm", "-f", f"{s.app_root}/{MARKER}"])
    ctx.repaired(
        f"markers left by {was} ({'; '.join(wrong)}) set to {color or 'absent'}"
        + (f" on {version}" if color and version else "")
    )
