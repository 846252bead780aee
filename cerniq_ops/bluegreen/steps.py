"""The steps of the blue-green procedures (procedures.py strings them into DEPLOY, SWITCH,
CANARY...): read the active color, bring up the idle one, check it, switch or move a canary's
share to it, write the markers, watch it, stop the idle color.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from cerniq_ops import compose, config_diff, hosts, rollout, traefik
from cerniq_ops.bluegreen.analysis import Traffic, _delta, _file_key, total_traffic, watch
from cerniq_ops.bluegreen.colors import (
    COLORS,
    ROUTED_SERVICES,
    _pairs,
    color_documents,
    color_project,
    color_stack,
    color_url,
    other,
    routed_name,
    traefik_service,
)
from cerniq_ops.bluegreen.containers import (
    color_containers,
    color_problems,
    color_version,
    describe_containers,
    stale_containers,
    surplus_containers,
)
from cerniq_ops.bluegreen.markers import MARKER, SWITCHED_AT, parse_marker, write_markers
from cerniq_ops.bluegreen.options import canary_steps, validate_options
from cerniq_ops.bluegreen.pending import begin_change, remove_pending, settle_unfinished
from cerniq_ops.bluegreen.routing import (
    COLOR_HEADER,
    ROUTER,
    _service_doc,
    apply_routing,
    confirm_routing,
    dynamic_config,
    dynamic_path,
    render,
    routed_service,
)
from cerniq_ops.clients.http import wait_healthy
from cerniq_ops.confirm import require
from cerniq_ops.deploy import _app_files, host_url, planned_diff
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, step
from cerniq_ops.settings import Settings
from cerniq_ops.steps import run_smoke, smoke_tail, verify_public


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
        for line in rollout.put_back_drained(s, ctx.app_hosts):  # a host left out goes back
            ctx.repaired(line)
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


def stop_hint(s: Settings, color: str) -> str:
    stack = color_stack(s, color)
    return (
        f"{color} keeps running; stop it with `invoke bluegreen.stop-idle --env {s.env}` "
        f"(or `{' '.join(stack.cmd('down'))}` on each app host)"
    )
