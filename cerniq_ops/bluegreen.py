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
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import requests

from cerniq_ops import compose, config_diff, hosts, metrics, rollout, traefik
from cerniq_ops.clients.http import Health, health, wait_healthy
from cerniq_ops.clock import now_utc
from cerniq_ops.compose import Stack
from cerniq_ops.confirm import require
from cerniq_ops.deploy import (
    _app_files,
    host_url,
    notify_deployment,
    notify_failure,
    planned_diff,
    pull_images,
    run_smoke,
    smoke_tail,
    validate,
    verify_public,
)
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, Report, run, step
from cerniq_ops.rollout import Container
from cerniq_ops.settings import HostSpec, Settings

COLORS = ("blue", "green")
MARKER = "active-env"
SWITCHED_AT = "active-env.switched-at"
VERSION_MARKERS = ("current-version", "previous-version")
PENDING = "bluegreen.pending"  # the run record of a change of routing not finished yet
TEMP_SUFFIX = ".tmp-cerniq"  # hosts.write_file's temporary names: .<name>.tmp-cerniq
CONFIRM_SECONDS = 30.0  # how long Traefik may take to confirm a routing on a host
DYNAMIC_FILE = "active.yml"
COLOR_HEADER = "X-Cerniq-Color"
ROUTER, WEB_ROUTER = "cerniq-app", "cerniq-web"
PRIORITY = 10_000  # above the docker-provider routers of the rolling deploy (rule length)
PREVIEW_PRIORITY = 20_000
ROUTED_SERVICES = ("api", "web")  # reached through Traefik; the rest (workers) just run


# -- pure builders: colors -----------------------------------------------------------------------
def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


def color_port(s: Settings, color: str) -> int:
    return s.blue_port if color == "blue" else s.green_port


def color_project(s: Settings, color: str) -> str:
    return f"{s.compose_project}-{color}"


def color_file(color: str) -> str:
    return f"docker-compose.{color}.yml"


def color_stack(s: Settings, color: str) -> Stack:
    return Stack(
        tuple(s.compose_command), color_project(s, color), f"{s.app_root}/{color_file(color)}"
    )


def alias(service: str, color: str) -> str:
    """The color's name for SERVICE on the shared network: what Traefik's servers point at."""
    return f"{service}-{color}"


def traefik_service(color: str, service: str = "api") -> str:
    return f"cerniq-{color}" if service == "api" else f"cerniq-{service}-{color}"


def routed_name(color: str, service: str = "api") -> str:
    """The service the public router names when COLOR is active: COLOR, failing over to the
    other color only while COLOR has no healthy server."""
    return f"{traefik_service(color, service)}-first"


def color_compose(s: Settings, color: str, version: str) -> str:
    """The whole app at VERSION as COLOR: no Traefik labels (the file provider routes it), the
    api published on the color's port, routed services aliased `<service>-<color>`."""
    services = {}
    for svc in s.services:
        spec = compose.app_service(s, svc, version, env_file=f".env.{color}", labelled=False)
        if svc in ROUTED_SERVICES:
            spec["networks"] = {"default": {"aliases": [alias(svc, color)]}}
        if svc == "api":
            spec["ports"] = [f"{color_port(s, color)}:80"]
        services[svc] = spec
    doc = {
        "version": "3.7",
        "services": services,
        "networks": {"default": {"external": True, "name": compose.network_name(s)}},
    }
    return compose.dump(doc)


def color_documents(
    s: Settings, color: str, version: str, db_password: str | None
) -> dict[str, tuple[str, str]]:
    return {
        color_file(color): (color_compose(s, color, version), "644"),
        f".env.{color}": (compose.env_file(s, version, db_password), "600"),
    }


def color_url(s: Settings, spec: HostSpec, color: str) -> str:
    """The color's api on HOST, straight (the seed's `curl localhost:6400x/health`)."""
    return f"http://{spec.address}:{color_port(s, color)}"


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


# -- pure: marker, canary steps, analysis --------------------------------------------------------
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


def canary_steps(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    """`10,50,100` -> [10, 50, 100]: increasing percentages; 100 is appended when missing."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        weights = [int(str(w).strip()) for w in items if str(w).strip()]
    except ValueError:
        raise BadInput(f"invalid --steps {spec!r}: percentages like 10,50,100") from None
    if not weights or any(not 0 < w <= 100 for w in weights) or weights != sorted(set(weights)):
        raise BadInput(f"invalid --steps {spec!r}: increasing percentages in 1..100, e.g. 10,50")
    return weights if weights[-1] == 100 else [*weights, 100]


def _seconds(value, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"invalid {name} {value!r}: a number of seconds >= 0") from None
    if not seconds >= 0 or seconds == float("inf"):  # also refuses nan
        raise BadInput(f"invalid {name} {value!r}: a number of seconds >= 0")
    return seconds


def validate_options(options: Mapping, s: Settings) -> dict:
    """Every option of `invoke bluegreen.*` (or the setting it defaults to), checked and parsed:
    the values to run with. BadInput (exit 2) names the first wrong one; nothing connects first.
    """
    to = options.get("to")
    if to is not None and to not in COLORS:
        raise BadInput(f"invalid --to {to!r}: choose blue or green")
    parsed: dict = {}
    if options.get("steps") is not None:
        parsed["steps"] = canary_steps(options["steps"])
    else:
        canary_steps(s.bluegreen_canary_steps)  # a bad override fails here, not mid-canary
    for name, setting in (
        ("pause", "bluegreen_canary_pause"),
        ("delay", "bluegreen_scale_down_delay"),
        ("analysis_seconds", "bluegreen_analysis_seconds"),
    ):
        if options.get(name) is not None:
            parsed[name] = _seconds(options[name], "--" + name.replace("_", "-"))
        else:
            _seconds(getattr(s, setting), f"setting {setting}")
    return parsed


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


# -- pure: a color's containers, every state -------------------------------------------------
def stale_containers(found: list[Container]) -> list[Container]:
    """Containers `compose up` would start again as they are (exited, created, dead...): never
    revive one; they are removed and compose creates fresh ones."""
    return [c for c in found if c.state != "running"]


def color_problems(found: list[Container], s: Settings, color: str, version: str) -> list[str]:
    """A color runs exactly one running container of each service, on VERSION's image."""
    problems = []
    for svc in s.services:
        mine = [c for c in found if c.service == svc]
        good = [c for c in mine if c.state == "running" and c.image == s.image(svc, version)]
        if len(good) != 1 or len(mine) != 1:
            seen = ", ".join(f"{c.id[:12]} {c.image.rsplit(':', 1)[-1]} {c.state}" for c in mine)
            problems.append(f"{color} {svc}: {seen or 'no container'} (want 1 x {version})")
    return problems


def surplus_containers(found: list[Container], s: Settings, version: str) -> list[Container]:
    """Beside a running container of a service on VERSION's image: its other containers."""
    extra = []
    for svc in s.services:
        mine = [c for c in found if c.service == svc]
        good = [c for c in mine if c.state == "running" and c.image == s.image(svc, version)]
        if good:
            extra += [c for c in mine if c is not good[0]]
    return extra


def describe_containers(found: list[Container]) -> str:
    return ", ".join(
        f"{c.service} {c.id[:12]} ({c.image.rsplit(':', 1)[-1]}, {c.state})" for c in found
    )


Traffic = metrics.Window  # requests, 5xx errors, seconds spent: Traefik's counters


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def analyse(
    new: Traffic,
    old: Traffic | None,
    *,
    max_error_rate: float,
    latency_factor: float,
    latency_floor: float,
    min_requests: int,
) -> Verdict:
    """The seed's rollback thresholds (9.1) on the new color's traffic in a window.

    Fails when the error rate is above MAX_ERROR_RATE, or the mean latency is above
    LATENCY_FACTOR x the old color's (and above LATENCY_FLOOR seconds, below which a ratio of
    sub-millisecond means is noise). Fewer than MIN_REQUESTS requests cannot fail it.
    """
    if new.requests < min_requests:
        return Verdict(True, f"{new.requests:.0f} request(s): too few to judge (< {min_requests})")
    rate = new.error_rate
    parts = [f"{new.requests:.0f} requests, {rate:.1%} errors"]
    if rate > max_error_rate:
        return Verdict(False, f"{parts[0]} (limit {max_error_rate:.0%})")
    latency, baseline = new.mean_latency or 0.0, old.mean_latency if old else None
    parts.append(f"mean {latency * 1000:.1f} ms")
    if baseline:
        parts.append(f"old {baseline * 1000:.1f} ms")
        if latency > latency_factor * baseline and latency > latency_floor:
            return Verdict(False, f"{', '.join(parts)}: above {latency_factor:g}x the old color")
    return Verdict(True, ", ".join(parts))


# -- reading hosts ---------------------------------------------------------------------------
def routed_service(host) -> str | None:
    """What Traefik's public router on HOST names now (None: no blue-green router)."""
    router = traefik.api_get(host, f"http/routers/{ROUTER}@file")
    return router.get("service") if isinstance(router, dict) else None


def traffic_on(host) -> dict[str, Traffic]:
    return metrics.by_service(metrics.scrape(host))


def _file_key(color: str) -> str:
    return f"{traefik_service(color)}@file"


def total_traffic(ctx: Context) -> dict[str, Traffic]:
    """Service traffic summed over every app host's Traefik."""
    summed: dict[str, Traffic] = {}
    for host in ctx.app_hosts:
        for name, t in traffic_on(host).items():
            summed[name] = summed.get(name, Traffic()) + t
    return summed


def color_version(s: Settings, host, spec: HostSpec, color: str) -> tuple[str | None, Health]:
    """(version the color runs, its health on the color's port)."""
    h = health(color_url(s, spec, color))
    if h.version:
        return h.version, h
    api = rollout.containers(host, color_project(s, color), "api")
    tags = sorted({c.image.rsplit(":", 1)[1] for c in api})
    return ("+".join(tags) or None), h


def color_containers(host, s: Settings, color: str) -> list[Container]:
    """The color's containers by compose labels, in every state (`docker ps -a`)."""
    _, out, _ = hosts.sh(host, compose.list_containers(color_project(s, color), all_states=True))
    return rollout.parse_ps(out)


def describe_routed(host, routed: str | None) -> str:
    """What HOST's public router names, with a canary's weights (`cerniq-canary (blue 90%,
    green 10%)`)."""
    if routed != "cerniq-canary":
        return routed or "no blue-green router"
    doc = _service_doc(host, "cerniq-canary") or {}
    weights = (doc.get("weighted") or {}).get("services") or []
    return f"{routed} (" + ", ".join(f"{w.get('name')} {w.get('weight')}%" for w in weights) + ")"


def _pairs(ctx: Context):
    return list(zip(ctx.settings.app_hosts, ctx.app_hosts, strict=True))


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


# -- steps -------------------------------------------------------------------------------------
@step(offline=True)
def check_inputs(ctx: Context) -> str:
    """Every option (steps, pause, delay, analysis window, color) valid before anything
    connects; the parsed values replace the raw ones."""
    ctx.options.update(validate_options(ctx.options, ctx.settings))
    shown = [f"{k}={ctx.options[k]}" for k in ("to", "steps", "pause", "delay") if k in ctx.options]
    return ", ".join(str(x) for x in shown) or "defaults"


@step(offline=True)
def confirm_change(ctx: Context) -> str:
    """Production needs the typed confirmation (the same phrase as `invoke deploy`)."""
    s = ctx.settings
    if s.confirm_phrase and not ctx.dry_run:
        return require(s.confirm_phrase, ctx.options.get("confirm"), f"{s.env.upper()} SWITCH")
    return "no confirmation needed"


@step()
def recover(ctx: Context) -> str:
    """What an earlier run killed midway left: its temporary files removed; its unfinished
    change of routing (its run record) resumed, kept or put back (plan_recovery)."""
    return settle_unfinished(ctx, resume=True)


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


@step(audited=False)
def read_active(ctx: Context) -> str:
    """The `active-env` marker on every app host: blue or green, the same everywhere."""
    s, markers, bad = ctx.settings, {}, []
    if ctx.facts.get("resumed"):  # recover set active/idle from the run record
        return f"resuming: {ctx.facts['active'] or 'none'} -> {ctx.facts['idle']}"
    repair = ctx.options.get("to")
    for spec, host in _pairs(ctx):
        text = hosts.read_file(host, f"{s.app_root}/{MARKER}")
        try:
            markers[spec.name] = parse_marker(text, spec.name)
        except StepFailed:
            if not repair:
                raise
            bad.append(spec.name)
    values = set(markers.values())
    if len(values) > 1 and not repair:
        seen = ", ".join(f"{n}={v or 'absent'}" for n, v in markers.items())
        raise StepFailed(
            f"{MARKER} differs between hosts ({seen}): nothing was changed; settle it with "
            f"`invoke bluegreen.switch --env {s.env} --to blue|green`"
        )
    active = next(iter(values)) if len(values) == 1 and not bad else None
    ctx.facts["markers_ok"] = active is not None
    initial = ctx.options.get("initial")
    if active is None and not (initial or repair):
        raise StepFailed(
            f"no {MARKER} marker on {s.env}'s app hosts: this would be the first blue-green "
            f"rollout; run `invoke bluegreen.deploy --env {s.env} --initial`"
        )
    if active is not None and initial:
        raise BadInput(f"{s.env} already runs blue-green ({active} is active): drop --initial")
    ctx.facts["active"] = active
    ctx.facts["idle"] = other(active) if active else "blue"
    if repair:
        ctx.facts["idle"] = repair
    return f"active: {active or 'none yet'}; idle: {ctx.facts['idle']}"


@step(audited=False)
def check_traefik(ctx: Context) -> str:
    """Traefik answers on every app host and routes the active color (or nothing yet)."""
    s, active = ctx.settings, ctx.facts["active"]
    if ctx.options.get("initial"):
        if ctx.dry_run:
            return "would make sure Traefik runs on every app host"
        hosts.apply(
            ctx.state, s.app_hosts, _app_files(), documents=_edge_documents(s)
        )  # edge compose file + the dynamic folder
        done = [f"{spec.name}: {rollout.ensure_edge(h, s)}" for spec, h in _pairs(ctx)]
    else:
        done = []
    routed = {}
    for spec, host in _pairs(ctx):
        try:
            routed[spec.name] = routed_service(host)
        except StepFailed as exc:
            raise StepFailed(
                f"{exc}: refusing to switch (nothing was changed); start Traefik with "
                f"`docker compose -p {s.compose_project}-edge -f "
                f"{s.app_root}/docker-compose.traefik.yml up -d` on {spec.name}"
            ) from None
    want = routed_name(active) if active else None
    if ctx.facts.get("resumed"):  # the killed run had switched every host already
        want = routed_name(ctx.facts["idle"])
    wrong = {n: r for n, r in routed.items() if r != want}
    if wrong and not ctx.options.get("to"):
        seen = ", ".join(f"{n} routes {r or 'no blue-green router'}" for n, r in wrong.items())
        raise StepFailed(
            f"Traefik disagrees with {MARKER}={active or 'absent'} ({seen}): nothing was changed; "
            f"settle it with `invoke bluegreen.switch --env {s.env} --to blue|green`"
        )
    ctx.facts["routed"] = routed
    if not ctx.dry_run:  # the old color's baseline: its traffic from now to the switch
        ctx.facts["metrics_at_start"] = total_traffic(ctx)
    if active is None and ctx.options.get("to") and not ctx.facts.get("resumed"):
        # repairing: the old color is what Traefik routes
        colors = {c for c in COLORS for r in routed.values() if r == routed_name(c)}
        ctx.facts["active"] = colors.pop() if len(colors) == 1 else None
    return "; ".join([*done, f"Traefik routes {want or 'no blue-green router yet'} everywhere"])


def _edge_documents(s: Settings) -> dict[str, tuple[str, str]]:
    return {"docker-compose.traefik.yml": (compose.edge_compose(s), "644")}


@step(audited=False)
def compare_versions(ctx: Context) -> str:
    """What the active color runs: the same version, healthy everywhere = nothing to do."""
    s, active = ctx.settings, ctx.facts["active"]
    if ctx.facts.get("resumed"):
        return f"skipped: resuming, {ctx.facts['idle']} already serves {ctx.version}"
    if active is None:
        return f"first rollout: {ctx.version} goes to {ctx.facts['idle']}"
    running = {}
    for spec, host in _pairs(ctx):
        version, h = color_version(s, host, spec, active)
        running[spec.name] = version if h.ok else None
    ctx.facts["previous_version"] = next(iter(running.values()))
    if all(v == ctx.version for v in running.values()):
        ctx.facts["converged"] = True
        return f"{active} already runs {ctx.version} on every app host: nothing to change"
    shown = ", ".join(f"{n}: {v or 'unhealthy'}" for n, v in running.items())
    return f"{active} runs {shown}"


@step()
def deploy_idle(ctx: Context) -> str:
    """The idle color's compose project at the new version, started (the seed: pull, up -d)."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("converged") or ctx.facts.get("resumed"):
        return "skipped: " + ("resuming" if ctx.facts.get("resumed") else "nothing changed")
    password = s.require_secret("db_password_env")
    documents = color_documents(s, idle, ctx.version, password)
    if ctx.dry_run:
        for line in hosts.apply(
            ctx.state, s.app_hosts, _app_files(), dry_run=True, documents=documents
        ):
            ctx.note(f"would change {line}")
        if ctx.options.get("diff"):
            for spec in s.app_hosts:
                for line in planned_diff(ctx, spec, documents):
                    ctx.note(f"{spec.name}: {line}")
        return f"would start {color_project(s, idle)} at {ctx.version}"
    hosts.apply(ctx.state, s.app_hosts, _app_files(), documents=documents)
    stack = color_stack(s, idle)
    for spec, host in _pairs(ctx):
        stale = stale_containers(color_containers(host, s, idle))
        if stale:  # `up` would start them again as they are: fresh ones instead
            hosts.sh(host, ["docker", "rm", "-f", *(c.id for c in stale)])
            ctx.repaired(f"{spec.name}: removed {describe_containers(stale)} of {idle}")
        hosts.sh(host, stack.cmd("up", "-d", "--remove-orphans"), timeout=900)
        found = color_containers(host, s, idle)
        extra = surplus_containers(found, s, ctx.version)
        if extra:  # e.g. a replica renamed by a recreate cut short, beside the new one
            hosts.sh(host, ["docker", "rm", "-f", *(c.id for c in extra)])
            ctx.repaired(f"{spec.name}: removed {describe_containers(extra)} of {idle}")
            found = color_containers(host, s, idle)
        problems = color_problems(found, s, idle, ctx.version)
        if problems:
            raise StepFailed(
                f"{spec.name}: {'; '.join(problems)} after `up`; traffic stays on "
                f"{ctx.facts['active'] or 'what served it'}"
            )
        ctx.note(f"{spec.name}: {stack.project} up at {ctx.version}")
    return f"{idle} runs {ctx.version} on {len(s.app_hosts)} host(s)"


@step(audited=False)
def wait_idle_healthy(ctx: Context) -> str:
    """The seed's loop: /health on the idle color's port, 30 x 2 s, reporting the new version."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("converged") or ctx.facts.get("resumed"):
        return "skipped: " + ("resuming" if ctx.facts.get("resumed") else "nothing changed")
    if ctx.dry_run:
        return (
            f"would wait for {idle} ({s.bluegreen_health_retries} x {s.bluegreen_health_interval}s)"
        )
    for spec in s.app_hosts:
        ok, last, attempts = wait_healthy(
            color_url(s, spec, idle),
            s.bluegreen_health_retries,
            s.bluegreen_health_interval,
            ctx.version,
        )
        if not ok:
            raise StepFailed(
                f"{idle} ({ctx.version}) is not healthy on {spec.name} after {attempts} "
                f"attempt(s): {last.detail}; traffic stays on "
                f"{ctx.facts['active'] or 'what served it'}; {stop_hint(s, idle)}"
            )
    return f"{idle} healthy on {len(s.app_hosts)} host(s)"


@step(audited=False)
def check_idle_ready(ctx: Context) -> str:
    """`switch`/`canary` of the idle color as it runs: only when it is healthy."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("resumed"):
        return f"skipped: resuming, {idle} already serves {ctx.version}"
    versions = set()
    for spec, host in _pairs(ctx):
        version, h = color_version(s, host, spec, idle)
        if not h.ok:
            raise StepFailed(
                f"{idle} is not healthy on {spec.name} ({h.detail}): refusing to send it "
                "traffic; nothing was changed"
            )
        problems = color_problems(color_containers(host, s, idle), s, idle, version or "")
        if problems:
            raise StepFailed(
                f"{spec.name}: {'; '.join(problems)}: refusing to send {idle} traffic; nothing "
                f"was changed; deploy it again with `invoke bluegreen.deploy --env {s.env} "
                f"--version {version}`"
            )
        versions.add(version)
        if ctx.facts["active"]:
            ctx.facts.setdefault(
                "previous_version", color_version(s, host, spec, ctx.facts["active"])[0]
            )
    if len(versions) > 1:
        raise StepFailed(f"{idle} runs different versions on the app hosts: {sorted(versions)}")
    ctx.version = versions.pop()
    if (
        ctx.facts["active"] == idle
        and ctx.facts.get("markers_ok")
        and all(r == routed_name(idle) for r in ctx.facts["routed"].values())
    ):
        ctx.facts["converged"] = True
        return f"{idle} is already active on {ctx.version}: nothing to change"
    return f"{idle} healthy on {ctx.version}"


@step()
def prepare_traefik(ctx: Context) -> str:
    """Both colors defined in Traefik (routing unchanged) and the idle one UP there."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("converged") or ctx.facts.get("resumed"):
        return "skipped: " + ("resuming" if ctx.facts.get("resumed") else "nothing changed")
    text = render(dynamic_config(ctx.facts["active"]))
    if ctx.dry_run:
        return f"would write {dynamic_path(s)} (routing unchanged) on {len(s.app_hosts)} host(s)"
    for _, host in _pairs(ctx):
        if hosts.read_file(host, dynamic_path(s)) != text.rstrip("\n"):
            hosts.write_file(host, dynamic_path(s), text)
    for spec, host in _pairs(ctx):
        for svc in ROUTED_SERVICES:
            name = traefik_service(idle, svc)
            traefik.wait_for(
                f"{name} UP in Traefik on {spec.name}",
                lambda h=host, n=name: bool(traefik.up_servers(_service_doc(h, n))),
                max(10.0, s.bluegreen_health_retries * s.bluegreen_health_interval),
            )
    return f"{traefik_service(idle)} UP in Traefik on {len(s.app_hosts)} host(s)"


def _service_doc(host, name: str) -> dict | None:
    doc = traefik.api_get(host, f"http/services/{name}@file")
    return doc if isinstance(doc, dict) else None


@step(audited=False)
def smoke_idle(ctx: Context) -> str:
    """The smoke suite against the idle color, through Traefik (`X-Cerniq-Color: <idle>`)."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("converged") or ctx.facts.get("resumed"):
        return "skipped: " + ("resuming" if ctx.facts.get("resumed") else "nothing changed")
    if ctx.dry_run:
        return f"would run the smoke suite against {idle} on every app host"
    with ThreadPoolExecutor(max_workers=len(s.app_hosts)) as pool:  # one suite per host, at once
        results = pool.map(
            lambda spec: run_smoke(host_url(s, spec), ctx.version, headers={COLOR_HEADER: idle}),
            s.app_hosts,
        )
    for spec, result in zip(s.app_hosts, list(results), strict=True):
        if result.returncode != 0:
            raise StepFailed(
                f"smoke tests failed against {idle} on {spec.name}: {smoke_tail(result)}; "
                "aborting the switch, "
                f"traffic stays on {ctx.facts['active'] or 'what served it'}; {stop_hint(s, idle)}"
            )
    return f"passed against {idle} on {len(s.app_hosts)} host(s)"


@step()
def switch_traffic(ctx: Context) -> str:
    """Write active.yml (router -> the idle color) on every app host; confirm it on each."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("converged"):
        return "skipped: nothing changed"
    if ctx.dry_run:
        if ctx.options.get("diff"):
            text = render(dynamic_config(idle, None))
            for spec, host in _pairs(ctx):
                old = hosts.read_file(host, dynamic_path(s))
                for line in config_diff.file_diff(dynamic_path(s), old, text, secret=False):
                    ctx.note(f"{spec.name}: {line}")
        return f"would route {ROUTER} to {routed_name(idle)} on {len(s.app_hosts)} host(s)"
    if ctx.facts.get("resumed"):  # written by the killed run: confirm it, write nothing
        for spec, host in _pairs(ctx):
            confirm_routing(s, spec, host, idle, None)
        ctx.facts["switched"] = True
        return f"{len(s.app_hosts)} host(s) already route {routed_name(idle)} (confirmed)"
    ctx.facts["metrics_at_switch"] = total_traffic(ctx)
    begin_change(ctx)
    seconds = apply_routing(ctx, idle, None)
    ctx.facts["switched"] = True
    return f"{len(s.app_hosts)} host(s) route {routed_name(idle)} ({seconds:.2f}s to confirm)"


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


@step()
def update_marker(ctx: Context) -> str:
    """`active-env` (and when, and current-version/previous-version) on every app host."""
    s, idle = ctx.settings, ctx.facts["idle"]
    if ctx.facts.get("converged"):
        return "skipped: nothing changed"
    if ctx.dry_run:
        return f"would write {MARKER}={idle}"
    ctx.facts["marker"] = idle
    write_markers(ctx, idle, ctx.version, ctx.facts.get("previous_version"))
    return f"{MARKER}={idle} on {len(s.app_hosts)} host(s)"


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


@step(audited=False)
def verify_switch(ctx: Context) -> str:
    """The seed's check after the switch: the public URL is healthy, on the new version."""
    s = ctx.settings
    if ctx.facts.get("converged"):
        return "skipped: nothing changed"
    if ctx.dry_run:
        return f"would check {s.public_url}/health and run the smoke suite"
    return verify_public(s, ctx.version)


@step(audited=False)
def post_switch_analysis(ctx: Context) -> str:
    """Argo's post-promotion analysis: for a window after the switch the new color must stay
    healthy and within the seed's thresholds (9.1); otherwise switch back."""
    s, new, old = ctx.settings, ctx.facts["idle"], ctx.facts["active"]
    window = float(ctx.options.get("analysis_seconds", s.bluegreen_analysis_seconds))
    if ctx.facts.get("converged") or window <= 0:
        return "skipped" + (": nothing changed" if ctx.facts.get("converged") else "")
    if ctx.dry_run:
        return f"would watch {new} for {window:g}s"
    before = ctx.facts.get("metrics_at_switch") or total_traffic(ctx)
    baseline = None
    if old:  # the old color just before the switch, under the same load; else all it served
        baseline = _delta(before, ctx.facts.get("metrics_at_start") or {}, old)
        if baseline.requests < s.bluegreen_min_requests:
            baseline = before.get(_file_key(old))
    verdict = watch(ctx, new, before, lambda _: baseline, window)
    return f"{window:g}s: {verdict.detail}"


def watch(
    ctx: Context,
    color: str,
    before: dict[str, Traffic],
    baseline: Callable[[dict[str, Traffic]], Traffic | None],
    seconds: float,
) -> Verdict:
    """Check COLOR every second for SECONDS: health through each host's entrypoint and the
    thresholds on its traffic since BEFORE. StepFailed at the first failed check."""
    s = ctx.settings
    deadline = time.monotonic() + seconds
    verdict = Verdict(True, "no check yet")
    while True:
        for spec, host in _pairs(ctx):
            up = traefik.up_servers(_service_doc(host, traefik_service(color)))
            if not up:
                raise StepFailed(f"{color} is DOWN in Traefik on {spec.name}")
        now = total_traffic(ctx)
        key = _file_key(color)
        verdict = analyse(
            now.get(key, Traffic()) - before.get(key, Traffic()),
            baseline(now),
            max_error_rate=s.rollback_error_rate,
            latency_factor=s.rollback_latency_factor,
            latency_floor=s.bluegreen_latency_floor,
            min_requests=s.bluegreen_min_requests,
        )
        if not verdict.ok:
            raise StepFailed(f"analysis of {color} failed: {verdict.detail}")
        if time.monotonic() >= deadline:
            return verdict
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


@step()
def canary(ctx: Context) -> str:
    """Traefik weighted services: move STEPS% to the new color, analysing it between steps."""
    s, new, old = ctx.settings, ctx.facts["idle"], ctx.facts["active"]
    weights = canary_steps(ctx.options.get("steps") or s.bluegreen_canary_steps)
    pause = float(ctx.options.get("pause", s.bluegreen_canary_pause))
    if ctx.facts.get("converged"):
        return "skipped: nothing changed"
    if ctx.facts.get("resumed"):  # the killed run had reached 100%: confirm it
        for spec, host in _pairs(ctx):
            confirm_routing(s, spec, host, new, None)
        ctx.facts["switched"] = True
        return f"skipped: resuming, the killed run had moved 100% to {new} (confirmed)"
    if old is None:
        raise StepFailed("a canary needs an active color to compare with: run a deploy first")
    if ctx.dry_run:
        return f"would move {' -> '.join(f'{w}%' for w in weights)} to {new}, {pause:g}s apart"
    begin_change(ctx)
    ctx.facts["canary_started"] = True
    done = []
    for weight in weights:
        if weight == 100:
            ctx.facts["metrics_at_switch"] = total_traffic(ctx)
            apply_routing(ctx, new, None)
            ctx.facts["switched"] = True
            done.append("100%")
            ctx.note(f"100% to {new}")
            break
        before = total_traffic(ctx)
        apply_routing(ctx, old, weight)
        ctx.facts["canary_weight"] = weight
        ctx.note(f"{weight}% to {new}; analysing for {pause:g}s")
        verdict = watch(
            ctx,
            new,
            before,
            lambda now, b=before: (
                now.get(_file_key(old), Traffic()) - b.get(_file_key(old), Traffic())
            ),
            pause,
        )
        ctx.note(f"{weight}%: {verdict.detail}")
        done.append(f"{weight}% ({verdict.detail})")
    return "; ".join(done)


@step(audited=False)
def close_run(ctx: Context) -> str:
    """The run record removed: the change of routing is finished (the last step)."""
    if ctx.dry_run or not ctx.facts.get("switch_started"):
        return "no run record"
    remove_pending(ctx)
    return f"run record removed on {len(ctx.settings.app_hosts)} host(s)"


def _delta(now: dict[str, Traffic], before: dict[str, Traffic], color: str) -> Traffic:
    key = _file_key(color)
    return now.get(key, Traffic()) - before.get(key, Traffic())


@step(audited=False)
def check_scale_down_delay(ctx: Context) -> str:
    """Argo's scaleDownDelay: the idle color is kept for a while after a switch."""
    s, idle = ctx.settings, ctx.facts["idle"]
    delay = float(ctx.options.get("delay", s.bluegreen_scale_down_delay))
    newest = 0.0
    for _, host in _pairs(ctx):
        text = hosts.read_file(host, f"{s.app_root}/{SWITCHED_AT}") or "0"
        newest = max(newest, float(text.split()[0] or 0))
    age = time.time() - newest
    if age < delay:
        raise StepFailed(
            f"switched {age:.0f}s ago; {idle} is kept {delay:g}s for a quick switch back "
            f"(bluegreen_scale_down_delay): run again in {delay - age:.0f}s, or pass --delay 0"
        )
    return f"switched {age:.0f}s ago (delay {delay:g}s)"


@step()
def stop_idle(ctx: Context) -> str:
    s, idle = ctx.settings, ctx.facts["idle"]
    stack = color_stack(s, idle)
    if ctx.dry_run:
        return f"would run `{' '.join(stack.cmd('down'))}` on {len(s.app_hosts)} host(s)"
    for spec, host in _pairs(ctx):
        if routed_service(host) != routed_name(ctx.facts["active"]):
            raise StepFailed(f"Traefik on {spec.name} does not route only the active color")
        hosts.sh(host, stack.cmd("down", "--remove-orphans"), timeout=300)
    return f"{stack.project} stopped on {len(s.app_hosts)} host(s)"


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


def stop_hint(s: Settings, color: str) -> str:
    stack = color_stack(s, color)
    return (
        f"{color} keeps running; stop it with `invoke bluegreen.stop-idle --env {s.env}` "
        f"(or `{' '.join(stack.cmd('down'))}` on each app host)"
    )


def where_traffic_goes(ctx: Context) -> str:
    """For the failure line: how the switch back went, and what each app host routes now."""
    names = [spec.name for spec in ctx.settings.app_hosts] if ctx.state else []
    parts = [f"{name} routes {_routes_now(ctx, name)}" for name in names]
    ctx.facts["routing"] = parts
    done = ctx.facts.get("switch_back")
    return (f"{done}; " if done and ctx.facts.get("switched_back") is False else "") + (
        "traffic: " + ", ".join(parts)
    )


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
