"""The decisions behind `invoke verify`: pure functions from what a host shows to what is wrong.

Each function takes data already read from a host (file modes, marker text, `docker ps` rows,
Traefik API documents, the lock and backup manifests, the audit log's bytes) and returns the
problems found, one sentence each, naming the thing and where it is (path, container, version).
An empty list means the check passes. The testinfra checks in verify/ only gather the data and
call these; the unit tests drive them by equality.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cerniq_ops.clock import TIME_FORMAT, parse_time
from cerniq_ops.compose import EDGE_DRAIN
from cerniq_ops.deploy_inputs import VERSION_RE
from cerniq_ops.rollout import Container

COLORS = ("blue", "green")
AUDIT_REQUIRED_KEYS = ("at", "who", "env", "procedure", "version", "step", "result")
AUDIT_CLOCK_TOLERANCE_SECONDS = 5  # two unlocked runs may append a second out of order
BLUEGREEN_ROUTER = "cerniq-app"


def describe_age(seconds: float) -> str:
    """`45 s`, `12 min`, `3.5 h`, `2.0 days`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- files and markers -----------------------------------------------------------------------
@dataclass(frozen=True)
class FileState:
    """What `stat` says about a path: its type (file, directory, other) and permission bits."""

    kind: str
    mode: int


@dataclass(frozen=True)
class Expected:
    path: str
    kind: str = "file"
    mode: int | None = None  # exact permission bits required (env files: 0o600)
    required: bool = True  # False: checked only when present


def expected_app_files(app_root: str, active_color: str | None) -> list[Expected]:
    """What a deployed app host has under APP_ROOT.

    Rolling deploys: docker-compose.yml and .env. Blue-green (ACTIVE_COLOR set): the active
    color's docker-compose.<color>.yml and .env.<color>, and traefik/dynamic/active.yml. Every
    env file present, required or not, must be mode 600: they hold the database password.
    """
    root = app_root.rstrip("/")
    env_files = {f"{root}/.env": False, **{f"{root}/.env.{c}": False for c in COLORS}}
    wanted = [Expected(f"{root}/docker-compose.traefik.yml")]
    if active_color in COLORS:
        wanted.append(Expected(f"{root}/docker-compose.{active_color}.yml"))
        env_files[f"{root}/.env.{active_color}"] = True
    else:
        wanted.append(Expected(f"{root}/docker-compose.yml"))
        env_files[f"{root}/.env"] = True
    wanted += [Expected(p, mode=0o600, required=r) for p, r in env_files.items() if r]
    wanted.append(Expected(f"{root}/traefik/dynamic", kind="directory"))
    if active_color in COLORS:
        wanted.append(Expected(f"{root}/traefik/dynamic/active.yml"))
    wanted += [Expected(p, mode=0o600, required=False) for p, r in env_files.items() if not r]
    return wanted


def file_problems(
    expected: Sequence[Expected], actual: Mapping[str, FileState | None]
) -> list[str]:
    """Missing paths, wrong types, wrong modes, and anything writable by others."""
    problems = []
    for want in expected:
        got = actual.get(want.path)
        if got is None:
            if want.required:
                problems.append(f"{want.path} is missing")
        elif got.kind != want.kind:
            problems.append(f"{want.path} is a {got.kind}, expected a {want.kind}")
        elif want.mode is not None and got.mode != want.mode:
            problems.append(f"{want.path} has mode {got.mode:o}, expected {want.mode:o}")
        elif got.mode & 0o002:
            problems.append(f"{want.path} is writable by everyone (mode {got.mode:o})")
    return problems


def marker_problem(path: str, content: str | None, *, required: bool) -> str | None:
    """A marker (current-version, previous-version, active-env) with the content it must have."""
    name = path.rsplit("/", 1)[-1]
    if content is None:
        return f"{path} is missing" if required else None
    value = content.strip()
    if "\n" in value:
        return f"{path} has {len(value.splitlines())} lines, expected one"
    if name == "active-env":
        if value not in COLORS:
            return f"{path} says {value!r}, expected one of: {', '.join(COLORS)}"
    elif not VERSION_RE.match(value):
        return f"{path} says {value!r}, not a version like v1.4.2"
    return None


def marker_value(content: str | None) -> str | None:
    return (content or "").strip() or None


# -- containers ------------------------------------------------------------------------------
def short(container_id: str) -> str:
    return container_id[:12]


def tag_of(image: str) -> str:
    return image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "latest"


def container_problems(
    containers: Sequence[Container],
    expected_images: Mapping[str, str],
    replicas: Mapping[str, int],
    project: str,
) -> list[str]:
    """Every service's containers of PROJECT: running, healthy, on the expected image, counted.

    CONTAINERS are all of the project's containers in any state (`docker ps -a`).
    """
    problems = []
    for service, image in expected_images.items():
        mine = [c for c in containers if c.service == service]
        want = replicas.get(service, 1)
        version = tag_of(image)
        if not mine:
            problems.append(f"{service}: no container in compose project {project}")
            continue
        good = 0
        for c in mine:
            name = f"{service} container {short(c.id)}"
            if c.state != "running":
                problems.append(f"{name} is {c.state} ({c.status or 'no status'})")
            elif c.image != image:
                problems.append(
                    f"{name} runs {c.image.rsplit('/', 1)[-1]}, current-version says {version}"
                )
            elif not c.healthy:
                problems.append(f"{name} is running but not healthy ({c.status})")
            else:
                good += 1
        if good != want:
            problems.append(f"{service}: {good} healthy replica(s) on {version}, expected {want}")
    return problems


def health_settling(
    containers: Sequence[Container], expected_images: Mapping[str, str], replicas: Mapping[str, int]
) -> bool:
    """True when every expected container runs on the right image and only health is wanting
    (starting, or one missed probe on a busy host): worth looking again before failing."""
    for service, image in expected_images.items():
        mine = [c for c in containers if c.service == service]
        if len(mine) != replicas.get(service, 1):
            return False
        if any(c.state != "running" or c.image != image for c in mine):
            return False
    return True


def edge_problems(containers: Sequence[Container], project: str) -> list[str]:
    traefik = [c for c in containers if c.service == "traefik"]
    if not traefik:
        return [f"traefik: no container in compose project {project}"]
    if not any(c.state == "running" for c in traefik):
        c = traefik[0]
        return [f"traefik container {short(c.id)} is {c.state} ({c.status or 'no status'})"]
    return []


# -- Traefik ---------------------------------------------------------------------------------
def _bare(service: str | None) -> str:
    """A Traefik service reference without its provider (`cerniq-blue@file` -> `cerniq-blue`)."""
    return (service or "").split("@", 1)[0]


def router_service(dynamic_config: Mapping[str, Any] | None, router: str) -> str | None:
    """The service ROUTER points at in a dynamic configuration document."""
    routers = ((dynamic_config or {}).get("http") or {}).get("routers") or {}
    doc = routers.get(router)
    return str(doc["service"]) if isinstance(doc, dict) and doc.get("service") else None


def primary_service(name: str | None, services: Mapping[str, Any] | None) -> str:
    """The service a router really sends to: a failover service's primary, else NAME itself.

    (Blue-green routes through `cerniq-<active>-first`: the active color, falling over to the
    other only while the active one has no healthy server.) SERVICES: {name: definition}.
    """
    bare = _bare(name)
    doc = (services or {}).get(bare) or (services or {}).get(name or "") or {}
    failover = doc.get("failover") if isinstance(doc, dict) else None
    if isinstance(failover, dict) and failover.get("service"):
        return _bare(str(failover["service"]))
    return bare


def active_color_problems(
    active: str | None,
    config_path: str,
    dynamic_config: Mapping[str, Any] | None,
    api_router: Mapping[str, Any] | None,
    api_service: Mapping[str, Any] | None = None,
    router: str = BLUEGREEN_ROUTER,
) -> list[str]:
    """The dynamic config and Traefik's API both route ROUTER to the active color's service.

    API_ROUTER is Traefik's `/api/http/routers/<router>@file` document (None: not found) and
    API_SERVICE the document of the service it names (to see through a failover service).
    """
    if active not in COLORS:
        return [f"active color unknown (active-env says {active!r})"]
    want = f"cerniq-{active}"
    problems = []
    if dynamic_config is None:
        problems.append(f"{config_path} is missing or not valid YAML")
    else:
        configured = router_service(dynamic_config, router)
        services = (dynamic_config.get("http") or {}).get("services") or {}
        if configured is None:
            problems.append(f"{config_path} has no router {router}")
        elif primary_service(configured, services) != want:
            problems.append(
                f"{config_path} routes {router} to {primary_service(configured, services)}, "
                f"but active-env says {active} (expected {want})"
            )
    if api_router is None:
        problems.append(f"Traefik's API has no router {router}@file")
    else:
        named = str(api_router.get("service"))
        served = primary_service(named, {_bare(named): api_service} if api_service else None)
        if served != want:
            problems.append(
                f"Traefik's API routes {router}@file to {served}, but active-env says {active}"
            )
        if api_router.get("status") != "enabled":
            errors = "; ".join(api_router.get("error") or []) or "no detail"
            problems.append(
                f"Traefik's router {router}@file is {api_router.get('status')}: {errors}"
            )
    return problems


def color_services(color: str) -> set[str]:
    """The file-provider services of COLOR (cerniq_ops.bluegreen names them so)."""
    return {f"cerniq-{color}", f"cerniq-web-{color}"}


def traefik_problems(
    routers: Sequence[Mapping[str, Any]],
    services: Sequence[Mapping[str, Any]],
    idle: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[str]:
    """Routers Traefik could not enable, and servers it sees DOWN (docker and file providers).

    IDLE: services whose servers may be down (the idle color of blue-green, once stopped).
    """
    problems = []
    ours = [r for r in routers if r.get("provider") in ("docker", "file")]
    if not ours:
        problems.append("Traefik has no router from the docker or file provider: nothing is routed")
    for r in ours:
        if _bare(r.get("name")) == EDGE_DRAIN:
            problems.append(
                f"router {r.get('name')}: /health answers 503, so the balancer keeps this host "
                "out; traefik/dynamic/edge-drain.yml was left by an interrupted Traefik "
                "recreate, and the next deploy (or `invoke setup`) removes it"
            )
        elif r.get("status") != "enabled":
            errors = "; ".join(r.get("error") or []) or "no detail"
            problems.append(f"router {r.get('name')} is {r.get('status')}: {errors}")
    for s in services:
        if s.get("provider") not in ("docker", "file") or _bare(s.get("name")) in idle:
            continue
        down = sorted(u for u, st in (s.get("serverStatus") or {}).items() if st != "UP")
        if down:
            problems.append(f"service {s.get('name')} has server(s) DOWN: {', '.join(down)}")
    return problems


# -- maintenance mode ------------------------------------------------------------------------
MAINTENANCE_ROUTER = "cerniq-maintenance"  # cerniq_ops.maintenance names it so


def maintenance_report(
    config_path: str,
    config_present: bool,
    router: Mapping[str, Any] | None,
    since: str | None,
) -> tuple[list[str], str]:
    """(problems, what to report) about maintenance mode on a host: `off`, or `ON since T:
    message` when the file is there and Traefik routes it; a problem when the two disagree."""
    enabled = bool(router) and router.get("status") == "enabled"  # type: ignore[union-attr]
    if not config_present and not router:
        return [], "off"
    if config_present and enabled:
        when, _, message = (since or "").strip().partition(" ")
        return [], f"ON since {when or 'unknown'}: {message or 'no message'}"
    if config_present:
        status = f"is {router.get('status')}" if router else "is not known to Traefik"
        return [f"{config_path} is present but router {MAINTENANCE_ROUTER} {status}"], ""
    return [f"Traefik still routes {MAINTENANCE_ROUTER} while {config_path} is gone"], ""


# -- disk ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Disk:
    path: str
    mount: str
    used_percent: int


def df_command(paths: Sequence[str]) -> str:
    """Shell text printing `<path> <df -P row>` for each of PATHS that exists."""
    import shlex

    quoted = " ".join(shlex.quote(p) for p in paths)
    return (
        f'for p in {quoted}; do [ -e "$p" ] || continue; '
        'printf \'%s \' "$p"; df -P "$p" | tail -n 1; done'
    )


def parse_df(output: str) -> list[Disk]:
    """The output of df_command as Disks, one per filesystem (the first path naming it)."""
    disks, seen = [], set()
    for line in output.splitlines():
        row = line.split()
        if len(row) < 7 or row[6] in seen or not row[5].rstrip("%").isdigit():
            continue
        seen.add(row[6])
        disks.append(Disk(row[0], row[6], int(row[5].rstrip("%"))))
    return disks


def disk_problems(disks: Sequence[Disk], warn_percent: int) -> list[str]:
    return [
        f"{d.mount} (holding {d.path}) is {d.used_percent}% full (warning above {warn_percent}%)"
        for d in disks
        if d.used_percent > warn_percent
    ]


# -- deploy lock -----------------------------------------------------------------------------
def lock_problem(
    path: str,
    text: str | None,
    now: datetime,
    max_age_minutes: float,
    holder_alive: bool | None = None,
) -> str | None:
    """A lock whose holder showed no life for MAX_AGE_MINUTES (a run died holding it: a
    working run refreshes it), or whose holder runs on this machine and is gone
    (HOLDER_ALIVE False: LockRecord.holder_alive, a killed run), or one no one can read."""
    if text is None:
        return None
    try:
        record = json.loads(text)
        alive = parse_time(record.get("refreshed") or record["since"])
    except (ValueError, KeyError, TypeError):
        return f"{path} is unreadable: {text.strip()[:60]!r}"
    if holder_alive is False:
        what = f"{record.get('procedure', '?')} {record.get('version') or ''}".strip()
        step = f", at step {record['step']}" if record.get("step") else ""
        return (
            f"{path} is held by a run that died: {what} (pid {record.get('pid')} on this "
            f"machine{step}, gone); `invoke lock.release`, then re-run the same command"
        )
    age = (now - alive).total_seconds()
    if age > max_age_minutes * 60:
        who = record.get("holder", "unknown")
        what = f"{record.get('procedure', '?')} {record.get('version') or ''}".strip()
        return (
            f"{path} is stale: held by {who} for {what} since {record['since']} "
            f"(last sign of life {describe_age(age)} ago, limit {max_age_minutes:g} min); "
            "if no run is active, `invoke lock.release`"
        )
    return None


def last_run_summary(journal_text: str | None) -> str:
    """`last run: deploy v1.2.0 ok at 2026-12-02T06:50:20Z (root@ci-7)` for verify's detail."""
    try:
        journal = json.loads(journal_text) if journal_text else None
    except ValueError:
        journal = None
    if not journal:
        return "no run recorded"
    run = journal.get("run") or {}
    what = f"{run.get('procedure', '?')} {run.get('version') or ''}".strip()
    return f"last run: {what} {journal.get('outcome')} at {journal.get('at')} ({run.get('holder')})"


def unfinished_run_problems(
    journal_path: str,
    journal_text: str | None,
    lock_text: str | None,
    pending: Mapping[str, str | None],
    now: datetime,
    max_age_minutes: float,
    holder_alive: bool | None = None,
) -> list[str]:
    """A run that died and was not re-run: the journal still says `running` while no working
    run holds the lock (HOLDER_ALIVE: see lock_problem); or a blue-green run record
    (PENDING: path -> text) left behind."""
    working = (
        lock_text is not None
        and lock_problem("", lock_text, now, max_age_minutes, holder_alive) is None
    )
    if working:
        return []
    problems = []
    try:
        journal = json.loads(journal_text) if journal_text else None
    except ValueError:
        journal = None
        problems.append(f"{journal_path} is unreadable: {journal_text.strip()[:60]!r}")
    if journal and journal.get("outcome") == "running":
        run = journal.get("run") or {}
        problems.append(
            f"a run of {run.get('procedure', '?')} {run.get('version') or ''}".rstrip()
            + f" died at step {run.get('step') or '?'} ({run.get('holder', '?')}, pid "
            f"{run.get('pid', '?')}, last sign of life {run.get('refreshed') or run.get('since')})"
            "; re-run the same command: it converges from what was left"
        )
    for path, text in pending.items():
        if text is not None:
            problems.append(
                f"{path}: a blue-green change was never finished ({text.strip()[:80]}); "
                "re-run it, or `invoke bluegreen.switch --to <color>`"
            )
    return problems


# -- backups ---------------------------------------------------------------------------------
def backup_problems(
    backups: Sequence[Any],
    env: str,
    where: str,
    now: datetime,
    max_age_hours: float,
    leftovers: Sequence[str] = (),
) -> tuple[list[str], str]:
    """(problems, summary) for the backups of ENV (cerniq_ops.backup.BackupInfo, newest first).

    Three states are told apart: no backup at all, no verified one (only unverified, failed or
    broken ones), and a verified one that is too old (older than MAX_AGE_HOURS). A verified
    backup counts only while its dump is there whole. The newest backup failing verification or
    losing its dump is a problem even when an older one is verified; LEFTOVERS (dumps without a
    manifest, .partial files of ENV: a run died) are flagged for `backup.prune`. Age is the
    data's age: when the backup finished, not when it was verified.
    """
    problems = [
        f"leftover {name} in {where} (a backup run died before its manifest); "
        f"`invoke backup.prune --env {env}` removes it"
        for name in leftovers
    ]
    mine = [b for b in backups if b.manifest.get("env") == env]
    if not mine:
        problems.insert(
            0, f"no backup: {env} has none in {where}; run `invoke backup.create --env {env}`"
        )
        return problems, "none"
    newest = mine[0]
    limit = max_age_hours * 3600
    if newest.state in ("dump missing", "size differs", "verify failed"):
        problems.append(f"newest backup {newest.id}: {newest.state} in {where}")
    verified = next((b for b in mine if b.verified), None)
    if verified is None:
        problems.append(
            f"unverified: no verified backup of {env} in {where} (newest {newest.id}: "
            f"{newest.state}); run `invoke backup.verify --env {env}`"
        )
    else:
        vage = (now - verified.finished).total_seconds()
        if vage > limit:
            problems.append(
                f"too old: the newest verified backup of {env}, {verified.id}, is "
                f"{describe_age(vage)} old (finished {verified.manifest.get('finished')}; "
                f"limit {max_age_hours:g} h) in {where}; run `invoke backup.create --env {env}` "
                f"and `invoke backup.verify --env {env}`"
            )
    age = (now - newest.finished).total_seconds()
    summary = f"newest {newest.id} ({describe_age(age)} old, {newest.state})"
    if verified is not None and verified is not newest:
        summary += f"; newest verified {verified.id}"
    return problems, summary


# -- databases a restore left ---------------------------------------------------------------
def restore_problems(
    databases: Sequence[Any], db_name: str, env: str, restore_prefix: str, where: str
) -> tuple[list[str], str]:
    """(problems, summary) for the cluster's databases (cerniq_ops.backup.Database) as a restore
    leaves them: the live DB_NAME there and accepting connections, no half-restored database
    (RESTORE_PREFIX...) and no swap that a restore made but never confirmed. Data kept under the
    retention delay is fine (listed in the summary; prune drops it when it is due)."""
    rerun = f"re-run `invoke backup.restore --env {env}` with the same backup"
    live = next((d for d in databases if d.name == db_name), None)
    mine = [d for d in databases if d.holds_data_of(db_name)]
    problems = []
    if live is None:
        kept = f" (restores kept: {', '.join(d.name for d in mine)})" if mine else ""
        problems.append(
            f"database {db_name} does not exist on {where}{kept}; rename the data to serve back "
            "by hand (docs/runbooks/backups.md, 'The live database is missing')"
        )
    elif not live.allow:
        problems.append(
            f"{db_name} on {where} does not accept connections (a restore died while closing "
            f"it, or one is running now); {rerun}"
        )
    problems += [
        f"{d.name} on {where} is a half-done restore (a restore died before its swap, or one "
        f"is running now); {rerun}"
        for d in databases
        if d.name.startswith(restore_prefix)
    ]
    problems += [
        f"{db_name} on {where} was swapped to backup {d.record.get('backup')} by a restore that "
        f"died before confirming it (the data before it is in {d.name}); {rerun}"
        for d in mine
        if d.unconfirmed
    ]
    kept = [d.name for d in mine if not d.unconfirmed]
    summary = f"{db_name} live" + (
        f"; kept under the retention delay: {', '.join(kept)}" if kept else ""
    )
    return problems, summary


# -- audit log -------------------------------------------------------------------------------
def audit_lines(content: bytes) -> list[bytes]:
    """The complete (newline-terminated) lines of the log, without their newlines."""
    lines = content.split(b"\n")
    return lines[:-1]  # the text after the last newline is a line still being written (or b"")


def prefix_digest(lines: Sequence[bytes], count: int | None = None) -> str:
    """sha256 of the first COUNT lines (default: all), each with its newline, as on disk."""
    chosen = lines if count is None else lines[:count]
    digest = hashlib.sha256()
    for line in chosen:
        digest.update(line + b"\n")
    return digest.hexdigest()


def audit_baseline(lines: Sequence[bytes], at: str) -> dict[str, Any]:
    """What verify records after a passing check: the log must later still start with this."""
    return {"lines": len(lines), "sha256": prefix_digest(lines), "verified_at": at}


def audit_problems(
    path: str, content: bytes, baseline: Mapping[str, Any] | None, env: str | None = None
) -> list[str]:
    """Every line a JSON record with the required keys; time never going back; and the log
    still starting with exactly the lines a previous verify saw (BASELINE), else rewritten."""
    lines = audit_lines(content)
    problems = []
    previous: datetime | None = None
    for number, raw in enumerate(lines, 1):
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            problems.append(f"{path} line {number} is not a JSON record: {raw[:60]!r}")
            continue
        missing = [k for k in AUDIT_REQUIRED_KEYS if k not in record]
        if missing:
            problems.append(f"{path} line {number} lacks {', '.join(missing)}")
            continue
        try:
            at = parse_time(str(record["at"]))
        except ValueError:
            problems.append(f"{path} line {number} has a bad time {record['at']!r}")
            continue
        if previous is not None and (previous - at).total_seconds() > AUDIT_CLOCK_TOLERANCE_SECONDS:
            problems.append(
                f"{path} line {number} goes back in time: {record['at']} after "
                f"{previous.strftime(TIME_FORMAT)}"
            )
        previous = max(previous or at, at)
        if env is not None and record["env"] != env:
            problems.append(f"{path} line {number} is of environment {record['env']!r}")
    if baseline:
        seen = int(baseline.get("lines", 0))
        when = baseline.get("verified_at", "a previous verify")
        if len(lines) < seen:
            problems.append(
                f"{path} was truncated: {len(lines)} line(s), {seen} when verified at {when}"
            )
        elif prefix_digest(lines, seen) != baseline.get("sha256"):
            problems.append(
                f"{path} was rewritten: its first {seen} line(s) changed since verified at {when}"
            )
    return problems
