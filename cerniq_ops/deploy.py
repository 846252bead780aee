"""`invoke deploy`: the seed's deploy.sh (7.2) as named steps, done correctly.

validate -> pre_deployment_checks -> create_backup -> pull_images -> run_migrations ->
rolling_update (waves of hosts in series, the hosts of a wave at once: files, api, web,
workers, host health) ->
post_deployment_verification -> record_release -> prune_old_versions -> notify_deployment.
On failure: notify_failure. validate, pull_images and the announcements are cerniq_ops.steps',
shared with the blue-green procedures and rollback.

Where the seed is unsafe we do what it means: the version is validated before anything runs and
never pasted into a shell; `--scale api=2` then `--scale api=1` (which removes the NEW replica)
is replaced by the measured zero-downtime replace in cerniq_ops.rollout.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cerniq_ops import compose, config_diff, hosts, metrics, releases, rollout, signals
from cerniq_ops.audit import actor
from cerniq_ops.clients import github
from cerniq_ops.clients.http import health, wait_healthy
from cerniq_ops.clock import now_utc
from cerniq_ops.deploy_inputs import batches
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, run, step
from cerniq_ops.prune import prune_old_versions
from cerniq_ops.settings import HostSpec, Settings
from cerniq_ops.steps import notify_deployment, notify_failure, pull_images, validate, verify_public


# -- pure helpers ------------------------------------------------------------------------------
def app_documents(
    s: Settings, version: str, db_password: str | None, versions: dict[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """The app host's files for VERSION (VERSIONS: services left on another version)."""
    return {
        "docker-compose.yml": (compose.app_compose(s, version, versions), "644"),
        "docker-compose.traefik.yml": (compose.edge_compose(s), "644"),
        ".env": (compose.env_file(s, version, db_password), "600"),
    }


def digests(documents: dict[str, tuple[str, str]]) -> dict[str, str]:
    """{relative path: sha256 hex} of DOCUMENTS, as `sha256sum` prints them on the host."""
    return {
        path: hashlib.sha256(text.encode()).hexdigest() for path, (text, _) in documents.items()
    }


def parse_digests(output: str, root: str) -> dict[str, str]:
    """`sha256sum` output -> {path relative to ROOT: digest}."""
    found = {}
    for line in output.splitlines():
        digest, _, path = line.partition("  ")
        if path:
            found[path.removeprefix(root.rstrip("/") + "/")] = digest
    return found


def expected_images(s: Settings, version: str) -> dict[str, str]:
    return {svc: s.image(svc, version) for svc in s.services}


def expected_replicas(s: Settings) -> dict[str, int]:
    return {svc: s.api_replicas if svc == "api" else 1 for svc in s.services}


def host_url(s: Settings, spec: HostSpec) -> str:
    """The host's own entrypoint (Traefik on the health port), bypassing any balancer."""
    return f"http://{spec.address}:{s.health_port}"


# -- steps -------------------------------------------------------------------------------------
@step()
def pre_deployment_checks(ctx: Context) -> str:
    s, notes = ctx.settings, []
    marker = hosts.read_file(ctx.primary, f"{s.app_root}/active-env")
    if marker is not None:
        raise BadInput(
            f"{s.env} runs blue-green (active-env: {marker.strip()}): a rolling deploy would "
            f"update a stack that gets no traffic; use `invoke bluegreen.deploy --env {s.env}`"
        )
    if ctx.options.get("skip_ci_check"):
        notes.append(f"CI check SKIPPED ({ctx.options.get('reason') or 'no reason given'})")
    else:
        ci = github.ci_status(
            s.github_api, s.github_repo, ctx.version, s.require_secret("github_token_env")
        )
        if not ci.passing:
            raise StepFailed(
                f"CI is not green for {ctx.version}: {ci.detail}; "
                "fix CI, or pass --skip-ci-check --reason '...'"
            )
        notes.append(f"CI passing ({ci.detail})")
    for spec in s.app_hosts:
        _, out, _ = hosts.sh(ctx.host(spec), "df -P / | awk 'NR==2 {print $5}' | tr -d %")
        used = int(out.strip() or 0)
        if used > s.disk_max_percent:
            raise StepFailed(f"disk on {spec.name} is {used}% full (limit {s.disk_max_percent}%)")
        if used > s.disk_warn_percent:
            ctx.note(f"warning: disk on {spec.name} is {used}% full")
    notes.append("disk ok")
    current = health(s.public_url)
    notes.append(f"current health: {'ok' if current.ok else 'NOT ok'} ({current.version or '-'})")
    ctx.facts["previous_version"] = current.version
    ctx.facts["converged"] = _converged(ctx)
    if ctx.facts["converged"]:
        notes.append(f"every host already runs {ctx.version}: nothing to change")
    return "; ".join(notes)


def _converged(ctx: Context) -> bool:
    password = ctx.settings.require_secret("db_password_env")
    return all(host_converged(ctx, spec, ctx.version, password) for spec in ctx.settings.app_hosts)


def host_converged(ctx: Context, spec: HostSpec, version: str, password: str) -> bool:
    """SPEC runs VERSION and says so: current-version, the files, every container of the app in
    any state (an exited one, or one of another image, is not converged) and a running Traefik."""
    s, host = ctx.settings, ctx.host(spec)
    if (hosts.read_file(host, f"{s.app_root}/current-version") or "").strip() != version:
        return False
    wanted = digests(app_documents(s, version, password))
    _, out, _ = hosts.sh(
        host, compose.file_digests([f"{s.app_root}/{p}" for p in sorted(wanted)]), check=False
    )
    if parse_digests(out, s.app_root) != wanted:
        return False
    found = rollout.containers(host, s.compose_project, all_states=True)
    if not rollout.converged(found, expected_images(s, version), expected_replicas(s)):
        return False
    edge = rollout.containers(host, compose.edge_stack(s).project, "traefik")
    return any(c.state == "running" for c in edge)


@step()
def create_backup(ctx: Context) -> str:
    """The pre-deploy backup, verified (checksum + `pg_restore --list`; a test restore too with
    `backup_verify_restore`). A converged deploy still takes it when migrations are pending:
    then it is the pre-migration backup."""
    from migrations_runner import pending

    s = ctx.settings
    todo = pending(s.db_conninfo(s.require_secret("db_password_env")), s.migrations_path)
    ctx.facts["pending_migrations"] = [m.label for m in todo]
    if ctx.facts.get("converged") and not todo:
        return "skipped: nothing will change (no pending migration)"
    label = "pre-migration" if ctx.facts.get("converged") else "pre-deploy"
    if ctx.dry_run:
        return f"would back up {s.db_name} on {s.db_host.name} ({label}) and verify it"
    from cerniq_ops.backup.creating import create_backup as backup
    from cerniq_ops.backup.verifying import verify_backup

    manifest = backup(ctx, label)
    ctx.facts["backup"] = manifest["id"]
    verified = verify_backup(ctx, manifest, restore=s.backup_verify_restore)
    return f"backup {manifest['id']} ({manifest['size']} bytes), {verified}"


def _backup_dump(ctx: Context) -> Path:
    """The dump of this run's backup, for the production gate's record; never a placeholder."""
    taken = ctx.facts.get("backup")
    if not taken:
        raise StepFailed("no pre-migration backup was taken in this run; nothing was migrated")
    return Path(ctx.settings.backup_dir) / f"{taken}.dump"


@step()
def run_migrations(ctx: Context) -> str:
    from migrations_runner import ProductionGate, RunOptions, migrate

    s = ctx.settings
    conninfo = s.db_conninfo(s.require_secret("db_password_env"))
    options = RunOptions(
        lock_timeout=s.migration_lock_timeout,
        statement_timeout=s.migration_statement_timeout,
        actor=actor(),
    )
    gate = None
    if s.env == "production":
        from cerniq_ops import settings as settings_mod

        staging = settings_mod.load("staging", target=s.target)
        gate = ProductionGate(
            staging=staging.db_conninfo(staging.require_secret("db_password_env")),
            backup_dir=Path(s.backup_dir),
            backup=lambda *_: _backup_dump(ctx),  # this run's verified backup, taken above
        )
    applied = migrate(
        conninfo,
        s.migrations_path,
        options=options,
        gate=gate,
        dry_run=ctx.dry_run,
        log=ctx.note,
        repaired=ctx.repaired,
    )
    if ctx.dry_run:
        return "planned (see above)"
    return (
        f"applied {len(applied)}: {', '.join(m.label for m in applied)}"
        if applied
        else "none pending"
    )


@step()
def rolling_update(ctx: Context) -> str:
    """Wave after wave (`--batch`), the hosts of a wave at once: files, then api and web replaced
    with zero downtime, then workers."""
    s = ctx.settings
    if not ctx.dry_run:  # first: a host a killed run left out of the balancer goes back in
        for line in rollout.put_back_drained(s, ctx.app_hosts):
            ctx.repaired(line)
    if ctx.facts.get("converged"):
        return "skipped: every host already runs " + str(ctx.version)
    password = s.require_secret("db_password_env")
    waves = batches(s.app_hosts, ctx.options.get("batch"))
    if ctx.dry_run:
        planned = hosts.apply(
            ctx.state,
            s.app_hosts,
            _app_files(),
            dry_run=True,
            documents=app_documents(s, ctx.version, password),
        )
        for line in planned:
            ctx.note(f"would change {line}")
        if ctx.options.get("diff"):
            for spec in s.app_hosts:
                for line in planned_diff(ctx, spec, app_documents(s, ctx.version, password)):
                    ctx.note(f"{spec.name}: {line}")
        return f"{len(waves)} wave(s): {' | '.join(','.join(h.name for h in w) for w in waves)}"
    timeout = s.health_retries * s.health_interval + 30
    for number, wave in enumerate(waves, 1):
        ctx.note(f"wave {number}/{len(waves)}: {', '.join(h.name for h in wave)}")
        changed = write_wave_files(ctx, wave, password)

        def roll(spec: HostSpec, halt: threading.Event, changed=changed) -> None:
            _deploy_host(ctx, spec, password, timeout, halt, changed[spec.name])

        roll_wave(ctx, wave, roll)
    return f"{len(s.app_hosts)} host(s) on {ctx.version}"


def write_wave_files(ctx: Context, wave: list[HostSpec], password: str) -> dict[str, int]:
    """The app files of every host of WAVE in one pyinfra run (pyinfra works on its hosts at
    once); {host: files changed}. Files change no container: each host's roll follows."""
    s = ctx.settings
    documents = app_documents(s, ctx.version, password)
    changes = hosts.apply(ctx.state, wave, _app_files(), documents=documents)
    return {
        spec.name: sum(1 for line in changes if line.startswith(f"{spec.name}: ")) for spec in wave
    }


def roll_wave(
    ctx: Context, wave: list[HostSpec], roll: Callable[[HostSpec, threading.Event], None]
) -> None:
    """ROLL every host of WAVE at once, a thread per host over its own SSH connection, and
    wait for all of them: a host that fails does not stop the others (each ends with its files
    matching its containers); the failure is raised once every host ended, so the next waves
    stay untouched. Ctrl-C or SIGTERM (raised in this, the main thread) sets HALT: each host
    stops at its next service, the wait goes on with further signals held off, then the
    interruption goes on to the runner's failure path."""
    if len(wave) == 1:
        roll(wave[0], threading.Event())
        return
    halt = threading.Event()
    pool = ThreadPoolExecutor(max_workers=len(wave), thread_name_prefix="host")
    futures = {pool.submit(roll, spec, halt): spec for spec in wave}
    try:
        concurrent.futures.wait(futures)
    except BaseException:
        halt.set()
        ctx.note(f"stopping: every host of the wave ends at its next service ({_names(wave)})")
        with signals.held_off(ctx.progress):
            concurrent.futures.wait(futures)
        raise
    finally:
        pool.shutdown(wait=True)
    failed = [(futures[f], f.exception()) for f in futures if f.exception() is not None]
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise StepFailed("; ".join(str(exc) for _, exc in failed)) from failed[0][1]


def _names(wave: list[HostSpec]) -> str:
    return ", ".join(h.name for h in wave)


def planned_diff(ctx: Context, spec: HostSpec, documents: dict[str, tuple[str, str]]) -> list[str]:
    """What DOCUMENTS would change in SPEC's files: a diff per file, the env file (mode 600)
    by key only."""
    lines: list[str] = []
    for relative, (text, mode) in sorted(documents.items()):
        path = f"{ctx.settings.app_root}/{relative}"
        old = hosts.read_file(ctx.host(spec), path)
        secret = int(mode, 8) & 0o077 == 0
        lines += config_diff.file_diff(path, old, text, secret=secret)
    return lines


def _app_files():
    from deploys.app import app_files

    return app_files


def _deploy_host(
    ctx: Context,
    spec: HostSpec,
    password: str,
    timeout: float,
    halt: threading.Event,
    changed: int,
) -> None:
    """SPEC (its CHANGED files just written for ctx.version) to ctx.version from whatever state
    it is in; its files and markers always end up matching what its containers run (also when
    this fails half way, or HALT stops it before one of its services)."""
    s, host = ctx.settings, ctx.host(spec)
    previous = (hosts.read_file(host, f"{s.app_root}/current-version") or "").strip() or None
    before = rollout.containers(host, s.compose_project, all_states=True)
    already = rollout.converged(before, expected_images(s, ctx.version), expected_replicas(s))
    ctx.note(f"{spec.name}: {changed} file(s) changed")
    if already and changed:
        ctx.repaired(
            f"{changed} file(s) on {spec.name} rewritten to match its containers ({ctx.version})"
        )
    try:
        ctx.note(f"{spec.name}: {rollout.ensure_edge(host, s)}")
        stack = compose.app_stack(s)
        for svc in s.services:
            if halt.is_set():
                raise StepFailed(f"{spec.name}: stopped before {svc} (the run was interrupted)")
            ctx.note(
                f"{spec.name}: "
                + rollout.roll(
                    host,
                    s,
                    stack,
                    svc,
                    s.image(svc, ctx.version),
                    expected_replicas(s)[svc],
                    timeout,
                    ctx.note,
                    ctx.repaired,
                )
            )
        ok, last, _ = wait_healthy(
            host_url(s, spec), s.health_retries, s.health_interval, ctx.version
        )
        if not ok:
            raise StepFailed(f"{spec.name} is not healthy on {ctx.version}: {last.detail}")
    except Exception:  # any failure (the runner reports it): files say what runs first
        match_files(ctx, spec, previous, password)
        raise
    if already and previous != ctx.version:
        ctx.repaired(
            f"current-version on {spec.name} said {previous or 'nothing'} while its containers "
            f"ran {ctx.version}: now {ctx.version}"
        )
    write_markers(ctx, spec, previous, ctx.version)


def write_markers(ctx: Context, spec: HostSpec, previous: str | None, version: str) -> None:
    """previous-version (when it changes), then current-version: written last, only once the
    host's containers run VERSION."""
    from deploys.markers import markers

    values = {"previous-version": previous} if previous and previous != version else {}
    hosts.apply(ctx.state, [spec], markers, values={**values, "current-version": version})


def match_files(ctx: Context, spec: HostSpec, previous: str | None, password: str) -> str:
    """After a failure on SPEC: its files (and current-version, when every service runs one
    version) say what its containers run now, service by service."""
    s, host = ctx.settings, ctx.host(spec)
    try:
        found = rollout.containers(host, s.compose_project, all_states=True)
        running = rollout.running_versions(found, s.services)
        base = previous or ctx.version
        versions = {svc: running.get(svc, base) for svc in s.services}
        one = set(versions.values())
        version = one.pop() if len(one) == 1 else base
        hosts.apply(
            ctx.state, [spec], _app_files(), documents=app_documents(s, version, password, versions)
        )
        if len(set(versions.values())) == 1 and version != previous:
            write_markers(ctx, spec, previous, version)
        what = rollout.describe_host(found, s.services)
        ctx.note(f"{spec.name}: files match what runs: {what}")
        return what
    except Exception as exc:  # the original failure is what the user must see
        ctx.note(f"warning: could not put {spec.name}'s files back: {exc}")
        return "unknown"


@step()
def post_deployment_verification(ctx: Context) -> str:
    s = ctx.settings
    if ctx.dry_run:
        return f"would check {s.public_url}/health ({s.health_retries} x {s.health_interval}s)"
    ctx.facts["metrics_before"] = _scrape_all(ctx)
    return verify_public(s, ctx.version)


def _scrape_all(ctx: Context) -> list:
    return [metrics.scrape(host) for host in ctx.app_hosts]


@step()
def record_release(ctx: Context) -> str:
    """Remember what this release is: its schema version (for rollbacks) and the traffic
    baseline seen while it was verified (for `rollback.check`)."""
    s = ctx.settings
    if ctx.dry_run:
        return f"would write {releases.release_path(s, ctx.version)}"
    if ctx.facts.get("converged") and releases.read(ctx.primary, s, ctx.version):
        return "unchanged"
    before = ctx.facts.pop("metrics_before", None) or _scrape_all(ctx)
    seen = sum(
        (metrics.window(b, a) for b, a in zip(before, _scrape_all(ctx), strict=True)),
        metrics.Window(0, 0, 0),
    )
    record = releases.new_record(
        version=ctx.version,
        who=actor(),
        at=now_utc(),
        schema_version=releases.schema_version(s),
        baseline=seen,
    )
    releases.write(ctx.primary, s, record)
    latency = record["baseline"]["mean_latency_ms"]
    baseline = "unknown (no traffic)" if latency is None else f"{latency:.1f} ms"
    return f"schema {record['schema_version']}, baseline {baseline}"


def host_versions(ctx: Context) -> str:
    """What each app host runs now, every service (for failure reports)."""
    s, parts = ctx.settings, []
    for spec in s.app_hosts:
        try:
            found = rollout.containers(ctx.host(spec), s.compose_project, all_states=True)
            parts.append(f"{spec.name} runs {rollout.describe_host(found, s.services)}")
        except Exception:  # the report must not fail
            parts.append(f"{spec.name} unknown")
    ctx.facts["hosts"] = parts
    return "hosts: " + "; ".join(parts)


DEPLOY = (
    validate,
    pre_deployment_checks,
    create_backup,
    pull_images,
    run_migrations,
    rolling_update,
    post_deployment_verification,
    record_release,
    prune_old_versions,
    notify_deployment,
)


def deploy(ctx: Context):
    """Run the deploy procedure; returns the Report (raises on failure, after notifying)."""
    return run(DEPLOY, ctx, on_failure=(notify_failure,), describe_state=host_versions)
