"""The steps shared by the rollout procedures (`invoke deploy`, `bluegreen.*`, `rollback`):
the version validated and its images published, images pulled on the app hosts, the public URL
checked with the smoke suite after a change, and the announcements in Slack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cerniq_ops import hosts, notify
from cerniq_ops.audit import actor
from cerniq_ops.clients.http import wait_healthy
from cerniq_ops.clients.registry import Registry
from cerniq_ops.clock import now_utc
from cerniq_ops.confirm import require
from cerniq_ops.deploy_inputs import batches, validate_version
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, step
from cerniq_ops.settings import PROJECT_DIR, Settings

SMOKE_DIR = PROJECT_DIR / "smoke"


# -- the version: valid and published in the registry -----------------------------------------
def registry_for(s: Settings) -> Registry:
    return Registry(s.registry, scheme=s.registry_scheme)


def require_published(s: Settings, version: str) -> None:
    """Every service's image of VERSION is in the registry; BadInput naming what is missing."""
    registry = registry_for(s)
    missing = [
        svc for svc in s.services if not registry.has_manifest(f"{s.image_prefix}/{svc}", version)
    ]
    if missing:
        raise BadInput(
            f"version {version} is not published in {s.registry} "
            f"({', '.join(missing)} missing); nothing was changed"
        )


def newest_version(s: Settings) -> str:
    tags = [t for t in registry_for(s).tags(f"{s.image_prefix}/api") if _is_release(t)]
    if not tags:
        raise BadInput(f"no published version of {s.image_prefix}/api in {s.registry}")
    return tags[-1]


def _is_release(tag: str) -> bool:
    try:
        validate_version(tag)
    except BadInput:
        return False
    return "-" not in tag  # pre-releases are deployed only when named


# -- steps ------------------------------------------------------------------------------------
@step(offline=True)
def validate(ctx: Context) -> str:
    """Environment and version valid, images published, secrets present, production confirmed."""
    s = ctx.settings
    batches(s.app_hosts, ctx.options.get("batch"))  # a bad --batch is refused before anything
    if ctx.options.get("diff") and not ctx.dry_run:
        raise BadInput("--diff shows what a dry run would change: pass it with --dry-run")
    if ctx.version is not None:
        validate_version(ctx.version)
    else:
        ctx.version = newest_version(s)
    require_published(s, ctx.version)
    s.require_secret("db_password_env")
    if not ctx.options.get("skip_ci_check"):
        s.require_secret("github_token_env")
    how = "no confirmation needed"
    if s.confirm_phrase and not ctx.dry_run:
        how = require(s.confirm_phrase, ctx.options.get("confirm"), f"{s.env.upper()} DEPLOYMENT")
    return f"{ctx.version} published; {how}"


@step()
def pull_images(ctx: Context) -> str:
    if ctx.facts.get("converged"):
        return "skipped: nothing will change"
    s = ctx.settings
    images = [s.image(svc, ctx.version) for svc in s.services]
    images.append(s.image("traefik", s.traefik_version))
    if ctx.dry_run:
        return f"would pull {len(images)} images on {len(s.app_hosts)} host(s)"
    for host in ctx.app_hosts:
        for image in images:
            hosts.sh(host, ["docker", "pull", "-q", image], timeout=900)
    return f"{len(images)} images on {len(s.app_hosts)} host(s)"


# -- after a change: the public URL healthy, the smoke suite ----------------------------------
def verify_public(s: Settings, version: str) -> str:
    """The seed's check after a change: the public URL reports VERSION healthy (with retries),
    then the smoke suite passes against it. StepFailed otherwise."""
    ok, last, attempts = wait_healthy(s.public_url, s.health_retries, s.health_interval, version)
    if not ok:
        raise StepFailed(f"health check failed after {attempts} attempt(s): {last.detail}")
    smoke = run_smoke(s.public_url, version)
    if smoke.returncode != 0:
        raise StepFailed(f"smoke tests failed against {s.public_url}: {smoke_tail(smoke)}")
    return f"{s.public_url} healthy on {version} (attempt {attempts}); smoke tests passed"


def smoke_tail(result: subprocess.CompletedProcess) -> str:
    """The summary line of a smoke run (pytest's last line)."""
    return (result.stdout.strip().splitlines() or ["no output"])[-1]


def run_smoke(
    url: str, version: str | None, headers: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The smoke suite against URL; HEADERS go with every request (blue-green's preview)."""
    env = {**os.environ, "CERNIQ_SMOKE_URL": url, "CERNIQ_SMOKE_VERSION": version or ""}
    if headers:
        env["CERNIQ_SMOKE_HEADERS"] = json.dumps(headers)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(SMOKE_DIR),
            str(SMOKE_DIR),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# -- announcements ----------------------------------------------------------------------------
@step()
def notify_deployment(ctx: Context) -> str:
    s = ctx.settings
    if ctx.dry_run:
        return "would notify Slack"
    when = now_utc()
    if ctx.facts.get("converged"):
        title = f"{_what(ctx)} to {s.env}: already on {ctx.version}, nothing changed"
    else:
        title = f"{_what(ctx)} to {s.env} completed"
    body = notify.deployment_announcement(
        ctx.version, s.env, when, ctx.options.get("changes") or [], ctx.message
    )
    delivery = notify.post_kind(
        "deploy",
        s.secret("slack_webhook_env"),
        notify.slack_payload(notify.Fields(title, _fields(ctx, when), True, body)),
    )
    return delivery.detail


def notify_failure(ctx: Context) -> str:
    s, when = ctx.settings, now_utc()
    title = f"{_what(ctx)} of {ctx.version} to {s.env} FAILED"
    body = f"Failed at step `{ctx.facts.get('failed_step')}`: {ctx.facts.get('error')}"
    delivery = notify.post_kind(
        "deploy",
        s.secret("slack_webhook_env"),
        notify.slack_payload(notify.Fields(title, _fields(ctx, when), False, body)),
    )
    return delivery.detail


def _what(ctx: Context) -> str:
    """How announcements name the procedure: `Deployment`, or e.g. `bluegreen.switch`."""
    return "Deployment" if ctx.procedure == "deploy" else ctx.procedure


def _fields(ctx: Context, when: str) -> dict[str, str]:
    return {
        "Version": str(ctx.version),
        "Environment": ctx.settings.env,
        "Deployed by": actor(),
        "Time": when,
    }
