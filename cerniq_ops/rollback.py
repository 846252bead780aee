"""`invoke rollback`: the seed's rollback.sh (9.2) as named steps, done correctly, and
`invoke rollback.check`: the seed's decision matrix (9.1) evaluated from live figures.

validate_rollback -> resolve_target -> open_incident_record -> notify_rollback_started ->
check_database -> redeploy_target (blue-green: switch back to the idle color when it still runs
the target; otherwise the zero-downtime rolling replace of `deploy`) -> rollback_database (only
with consent, after a backup) -> verify_rollback -> close_incident -> notify_rollback_complete.

The seed stopped every service, checked out a git tag on the server and started again; here
the target must be a version published in the registry, it never reaches a shell unquoted, and
traffic keeps flowing throughout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cerniq_ops import deploy, hosts, incident, metrics, notify, releases, steps
from cerniq_ops.audit import actor
from cerniq_ops.clients.http import health, wait_healthy
from cerniq_ops.confirm import require
from cerniq_ops.deploy_inputs import validate_version
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, run, step

CONFIRM_PHRASE = "ROLLBACK"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _record(ctx: Context, event: str, **changes) -> None:
    """Add EVENT to the incident's timeline (and apply CHANGES) and save it on the host."""
    record = ctx.facts.get("incident")
    if record is None:
        return
    record = {**incident.add_event(record, _now(), event), **changes}
    incident.save(ctx.primary, ctx.settings, record)
    ctx.facts["incident"] = record


# -- steps -------------------------------------------------------------------------------------
@step(offline=True)
def validate_rollback(ctx: Context) -> str:
    s = ctx.settings
    if ctx.options.get("previous") == bool(ctx.version):
        raise BadInput("say where to roll back to: --to vA.B.C or --previous (one of them)")
    if ctx.version:
        _check_published(ctx)
    s.require_secret("db_password_env")
    incident.severity(ctx.options.get("severity", "P2"))
    if ctx.dry_run:
        return "dry run: no confirmation needed"
    return require(CONFIRM_PHRASE, ctx.options.get("confirm"), f"ROLLBACK of {s.env}")


def _check_published(ctx: Context) -> None:
    """Only a release tag published in the registry, for every service, is a rollback target."""
    validate_version(ctx.version)
    steps.require_published(ctx.settings, ctx.version)


@step()
def resolve_target(ctx: Context) -> str:
    """The target; an earlier rollback that died on the way (its incident still in progress) is
    resumed, not started again: `--previous` would otherwise read a previous-version the dead
    run already rewrote."""
    s = ctx.settings
    current = (hosts.read_file(ctx.primary, f"{s.app_root}/current-version") or "").strip()
    unfinished = _unfinished(ctx)
    if ctx.options.get("previous"):
        if unfinished:
            ctx.version = unfinished["to_version"]
        else:
            previous = (
                hosts.read_file(ctx.primary, f"{s.app_root}/previous-version") or ""
            ).strip()
            if not previous:
                raise BadInput(f"{s.env} has no previous version recorded; use --to vA.B.C")
            ctx.version = previous
        _check_published(ctx)
    elif unfinished and unfinished.get("to_version") != ctx.version:
        unfinished = None  # another target: this run opens its own incident
    ctx.facts["from_version"] = (unfinished or {}).get("from_version") or current or None
    if unfinished:
        ctx.facts["incident"] = unfinished
        line = f"the rollback to {ctx.version} of {unfinished['id']}, which an earlier run left"
        if ctx.dry_run:
            ctx.note(f"would resume {line} unfinished")
        else:
            ctx.repaired(f"resuming {line} unfinished")
    if ctx.version == current:
        bluegreen = hosts.read_file(ctx.primary, f"{s.app_root}/active-env") is not None
        if bluegreen and not unfinished:
            raise BadInput(f"{s.env} already runs {current}: nothing to roll back")
        if not bluegreen and _everywhere(ctx):
            ctx.facts["converged"] = True
            if not unfinished:
                return f"{s.env} already runs {current} on every host: nothing to roll back"
    return f"{ctx.facts['from_version'] or 'unknown'} -> {ctx.version}"


def _unfinished(ctx: Context) -> dict | None:
    """The newest rollback incident of this environment still in progress (its run died)."""
    records = [
        r
        for r in incident.list_all(ctx.primary, ctx.settings)
        if r.get("type") == "rollback" and r.get("status") == "in_progress"
    ]
    return records[-1] if records else None


def _everywhere(ctx: Context) -> bool:
    """Every app host runs ctx.version and says so (markers, files, every container)."""
    password = ctx.settings.require_secret("db_password_env")
    return all(
        deploy.host_converged(ctx, spec, ctx.version, password) for spec in ctx.settings.app_hosts
    )


def _nothing_to_do(ctx: Context) -> bool:
    """Already on the target, with no unfinished rollback to complete."""
    return bool(ctx.facts.get("converged")) and ctx.facts.get("incident") is None


@step()
def open_incident_record(ctx: Context) -> str:
    if _nothing_to_do(ctx):
        return "skipped: nothing to roll back"
    if ctx.dry_run:
        return "would open an incident record"
    if ctx.facts.get("incident"):
        _record(ctx, f"resumed by {actor()} after an interrupted run")
        return f"resumed {ctx.facts['incident']['id']}"
    record = incident.new_incident(
        at=_now(),
        env=ctx.env,
        severity_name=ctx.options.get("severity", "P2"),
        title=ctx.options.get("reason") or f"rollback of {ctx.env} to {ctx.version}",
        who=actor(),
        kind="rollback",
        from_version=ctx.facts.get("from_version"),
        to_version=ctx.version,
    )
    record = incident.create(ctx.primary, ctx.settings, record)
    ctx.facts["incident"] = record
    return f"{record['id']} in {incident.incidents_dir(ctx.settings)}"


def _slack(ctx: Context, title: str, ok: bool) -> str:
    record = ctx.facts.get("incident") or {}
    fields = {
        "Environment": ctx.env,
        "From": str(ctx.facts.get("from_version")),
        "To": str(ctx.version),
        "Incident": record.get("id", "-"),
        "By": actor(),
    }
    payload = notify.slack_payload(notify.Fields(title, fields, ok))
    return notify.post_kind("rollback", ctx.settings.secret("slack_webhook_env"), payload).detail


@step()
def notify_rollback_started(ctx: Context) -> str:
    if _nothing_to_do(ctx):
        return "skipped: nothing to roll back"
    if ctx.dry_run:
        return "would notify Slack"
    record = ctx.facts["incident"]
    return _slack(ctx, f"ROLLBACK INITIATED: {ctx.env} to {ctx.version} ({record['id']})", True)


@step()
def check_database(ctx: Context) -> str:
    """Which migrations were applied after the target version's schema (seed 9.2 step 5)."""
    s = ctx.settings
    if _nothing_to_do(ctx):
        ctx.facts["db_rollback_to"] = None
        return "skipped: nothing to roll back"
    target = releases.read(ctx.primary, s, ctx.version)
    current_schema = releases.schema_version(s)
    if target is None:
        ctx.facts["db_rollback_to"] = None
        return (
            f"no release record of {ctx.version}: its schema is unknown; the database is "
            f"left at {current_schema}"
        )
    after = _applied_after(s, target["schema_version"])
    ctx.facts["db_rollback_to"] = target["schema_version"] if after else None
    ctx.facts["migrations_after"] = after
    if not after:
        return f"schema {current_schema} is what {ctx.version} ran with: nothing to undo"
    listed = ", ".join(after)
    if not ctx.options.get("db_rollback"):
        ctx.note(f"warning: migrations applied after {ctx.version}: {listed}")
        ctx.note("they stay applied; pass --db-rollback to undo them (after a backup)")
        ctx.facts["db_rollback_to"] = None
        return f"{len(after)} migration(s) newer than {ctx.version}: kept"
    return f"{len(after)} migration(s) newer than {ctx.version} will be undone: {listed}"


def _applied_after(s, schema: int) -> list[str]:
    from migrations_runner import status

    rows = status(s.db_conninfo(s.require_secret("db_password_env")), s.migrations_path)
    return [
        f"{r.version:04d} {r.name}"
        for r in rows
        if r.state in ("applied", "drifted") and r.version > schema
    ]


@step()
def redeploy_target(ctx: Context) -> str:
    """A blue-green environment switches back to the idle color when it still runs the target
    (fast path) or gets the target on the idle color; otherwise the target is deployed with the
    zero-downtime rolling replace of `invoke deploy`."""
    from cerniq_ops import bluegreen

    if ctx.dry_run:
        return f"would bring {ctx.version} back (blue-green switch or rolling replace)"
    if ctx.facts.get("converged"):
        return f"every host already runs {ctx.version}"
    how = bluegreen.rollback_path(ctx)
    if how is None:
        how = f"{steps.pull_images(ctx)}; {deploy.rolling_update(ctx)}"
    _record(ctx, how)
    return how


@step()
def rollback_database(ctx: Context) -> str:
    to = ctx.facts.get("db_rollback_to")
    if to is None:
        return "nothing to do"
    if ctx.dry_run:
        return f"would back up, then roll migrations back to {to}"
    from cerniq_ops.backup.creating import create_backup
    from migrations_runner import RunOptions, rollback

    s = ctx.settings
    manifest = create_backup(ctx, "pre-migration")
    undone = rollback(
        s.db_conninfo(s.require_secret("db_password_env")),
        s.migrations_path,
        to=to,
        options=RunOptions(
            lock_timeout=s.migration_lock_timeout,
            statement_timeout=s.migration_statement_timeout,
            actor=actor(),
        ),
        log=ctx.note,
    )
    _record(ctx, f"database rolled back to {to} after backup {manifest.get('id')}")
    return f"backup {manifest.get('id')}; undone: {', '.join(m.label for m in undone)}"


@step()
def verify_rollback(ctx: Context) -> str:
    s = ctx.settings
    if ctx.dry_run:
        return f"would check {s.public_url}/health reports {ctx.version}"
    ok, last, attempts = wait_healthy(
        s.public_url, s.health_retries * 2, s.health_interval, ctx.version
    )
    if not ok:
        raise StepFailed(f"{s.public_url} not healthy on {ctx.version}: {last.detail}")
    _record(ctx, f"health ok on {ctx.version}")
    return f"health ok on {ctx.version} (attempt {attempts})"


@step()
def close_incident(ctx: Context) -> str:
    if _nothing_to_do(ctx):
        return "skipped: nothing to roll back"
    if ctx.dry_run:
        return "would close the incident record"
    record = ctx.facts["incident"]
    closed = incident.update(record, _now(), "completed", f"now running {ctx.version}", actor())
    incident.save(ctx.primary, ctx.settings, closed)
    ctx.facts["incident"] = closed
    return f"{closed['id']} completed"


@step()
def notify_rollback_complete(ctx: Context) -> str:
    if _nothing_to_do(ctx):
        return "skipped: nothing to roll back"
    if ctx.dry_run:
        return "would notify Slack"
    record = ctx.facts["incident"]
    return _slack(
        ctx, f"ROLLBACK COMPLETE: {ctx.env} now runs {ctx.version} ({record['id']})", True
    )


def rollback_failed(ctx: Context) -> str:
    """On failure: the incident says so, and Slack is told."""
    record = ctx.facts.get("incident")
    if record and not record.get("completed_at"):
        failed = incident.update(record, _now(), "failed", str(ctx.facts.get("error")), actor())
        incident.save(ctx.primary, ctx.settings, failed)
        ctx.facts["incident"] = failed
    return _slack(ctx, f"ROLLBACK FAILED: {ctx.env} to {ctx.version}", False)


ROLLBACK = (
    validate_rollback,
    resolve_target,
    open_incident_record,
    notify_rollback_started,
    check_database,
    redeploy_target,
    rollback_database,
    verify_rollback,
    close_incident,
    notify_rollback_complete,
)


def rollback(ctx: Context):
    return run(ROLLBACK, ctx, on_failure=(rollback_failed,), describe_state=deploy.host_versions)


# -- rollback.check: the decision matrix (seed 9.1) --------------------------------------------
@dataclass(frozen=True)
class Decision:
    category: str  # immediate | considered | optional | none
    rule: str
    figures: dict


def decide(
    *,
    healthy: bool,
    window: metrics.Window,
    baseline_ms: float | None,
    error_rate_limit: float,
    latency_factor: float,
    latency_floor_ms: float = 0.0,
) -> Decision:
    """Pure: the seed's matrix. Health down = immediate; error rate > 5% or latency > 3x the
    baseline = considered; some errors or a slower service (< 50% degradation) = optional.
    Mean latencies under LATENCY_FLOOR_MS are never compared (noise on a quiet service)."""
    latency_ms = window.mean_latency * 1000 if window.mean_latency is not None else None
    figures = {
        "healthy": healthy,
        "requests": int(window.requests),
        "errors": int(window.errors),
        "error_rate": round(window.error_rate, 4),
        "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
        "baseline_ms": baseline_ms,
    }
    ratio = None
    if latency_ms is not None and baseline_ms and latency_ms >= latency_floor_ms:
        ratio = latency_ms / baseline_ms  # below the floor, a ratio of tiny means is noise
    figures["latency_ratio"] = round(ratio, 2) if ratio is not None else None
    if not healthy:
        return Decision("immediate", "service completely down (health check fails)", figures)
    if window.error_rate > error_rate_limit:
        return Decision(
            "considered", f"error rate {window.error_rate:.1%} > {error_rate_limit:.0%}", figures
        )
    if ratio is not None and ratio > latency_factor:
        return Decision(
            "considered", f"response time {ratio:.1f}x baseline > {latency_factor:g}x", figures
        )
    if window.errors > 0:
        return Decision("optional", f"minor errors ({int(window.errors)} 5xx)", figures)
    if ratio is not None and ratio > 1.1:
        return Decision("optional", f"performance degradation {ratio - 1:.0%} (< 50%)", figures)
    return Decision("none", "no rollback trigger fired", figures)


def check(ctx: Context, window_seconds: float) -> Decision:
    """Measure WINDOW_SECONDS of live traffic through every app host's Traefik and decide."""
    s = ctx.settings
    before = [metrics.scrape(h) for h in ctx.app_hosts]
    time.sleep(window_seconds)  # a measurement window, not a wait for a condition
    after = [metrics.scrape(h) for h in ctx.app_hosts]
    seen = sum(
        (metrics.window(b, a) for b, a in zip(before, after, strict=True)), metrics.Window(0, 0, 0)
    )
    healthy = health(s.public_url).ok
    current = (hosts.read_file(ctx.primary, f"{s.app_root}/current-version") or "").strip()
    release = releases.read(ctx.primary, s, current) if current else None
    baseline = (release or {}).get("baseline", {}).get("mean_latency_ms")
    decision = decide(
        healthy=healthy,
        window=seen,
        baseline_ms=baseline,
        error_rate_limit=s.rollback_error_rate,
        latency_factor=s.rollback_latency_factor,
        latency_floor_ms=s.rollback_latency_floor * 1000,
    )
    ctx.facts["decision"] = decision
    return decision


def watch(s, window: float, interval: float, progress=lambda _: None) -> Decision:
    """Evaluate the matrix every INTERVAL seconds for WINDOW seconds; stop at 'immediate'."""
    from cerniq_ops import hosts as hosts_mod

    with hosts_mod.session(s) as state:
        ctx = Context(s, "rollback.watch", state=state, locking=False)
        deadline = time.monotonic() + window
        while True:
            decision = check(ctx, interval)
            progress(f"      watch: {decision.category}: {decision.rule}")
            if decision.category == "immediate" or time.monotonic() >= deadline:
                return decision


def guard(s, window: float, progress=lambda _: None) -> str:
    """`--auto-rollback`: watch the change for WINDOW seconds; on 'immediate' roll back to the
    previous version (consent was given with the flag) and fail with the rule that fired."""
    progress(f"== watching {s.env} for {window:.0f}s (--auto-rollback)")
    decision = watch(s, window, min(5.0, window), progress)
    if decision.category != "immediate":
        return f"watched {window:.0f}s: {decision.category} ({decision.rule})"
    from cerniq_ops import settings as settings_mod

    ctx = Context(
        settings_mod.load(s.env, target=s.target),
        "rollback",
        progress=progress,
        message=f"auto-rollback: {decision.rule}",
        options={
            "previous": True,
            "confirm": CONFIRM_PHRASE,
            "severity": "P1",
            "reason": f"auto-rollback: {decision.rule}",
        },
    )
    rollback(ctx)
    raise StepFailed(
        f"{s.env} was rolled back to {ctx.version} automatically: {decision.rule} "
        f"({ctx.facts['incident']['id']})"
    )
