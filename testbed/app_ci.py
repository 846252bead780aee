"""The app's CI on the testbed: a `post-receive` hook of the bare origin. For each release tag
pushed (`refs/tags/vX.Y.Z`) it starts a build in the background, as a CI service would, and
the push returns at once; the build reports a green check run named CI on the tag's commit to
GitHub (`POST /repos/{owner}/{repo}/check-runs`, when `configure_github` named an API: the
tests' stand-in), then publishes the tag's images to the testbed registry. Each build says
what it did in `<origin>/ci.log`.

    install(origin, registry="10.77.0.2:5000", prefix="cerniq")   # by `invoke testbed.up`
    configure_github(origin, api, repo, token)                     # by a test, optional
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import requests

from cerniq_ops.clients.registry import Registry
from testbed import images

PROJECT = Path(__file__).resolve().parent.parent
CONFIG = "cerniq-ci.json"
LOG = "ci.log"
ZERO = "0" * 40


def hook_script(origin: Path, python: str = sys.executable) -> str:
    return (
        "#!/bin/sh\n"
        "# The app's CI on the testbed (testbed/app_ci.py): release tags pushed here get a\n"
        "# green check run on GitHub and their images published, in the background.\n"
        f"PYTHONPATH={shlex.quote(str(PROJECT))} exec {shlex.quote(python)} -m testbed.app_ci "
        f"{shlex.quote(str(origin))}\n"
    )


def install(origin: Path, registry: str, prefix: str) -> None:
    """Make ORIGIN's post-receive hook the app's CI, publishing to REGISTRY under PREFIX."""
    _write_config(origin, {"registry": registry, "prefix": prefix})
    hook = origin / "hooks" / "post-receive"
    hook.write_text(hook_script(origin))
    hook.chmod(0o755)


def configure_github(origin: Path, api: str, repo: str, token: str) -> None:
    """Report check runs to the GitHub API at API (the token stays in a mode-600 file)."""
    config = json.loads((origin / CONFIG).read_text())
    _write_config(origin, {**config, "github": {"api": api, "repo": repo, "token": token}})


def _write_config(origin: Path, config: dict) -> None:
    path = origin / CONFIG
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(config, indent=2) + "\n")


def release_tags(pushed: str) -> list[str]:
    """The release tags created or moved by a push (post-receive's `old new ref` lines)."""
    tags = []
    for line in pushed.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[1] == ZERO:  # a deleted ref builds nothing
            continue
        ref = parts[2]
        if ref.startswith("refs/tags/v"):
            tags.append(ref.removeprefix("refs/tags/"))
    return tags


def check_run(sha: str) -> dict:
    """The check run a finished, green CI build reports (GitHub's create-check-run body)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "name": "CI",
        "head_sha": sha,
        "status": "completed",
        "conclusion": "success",
        "completed_at": now,
    }


def build(origin: Path, tag: str) -> None:
    """What CI does for TAG: tests green (a check run), then the images published."""
    config = json.loads((origin / CONFIG).read_text())
    sha = subprocess.run(
        ["git", "-C", str(origin), "rev-parse", f"{tag}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log(origin, f"{tag}: build of {sha[:10]} started")
    github = config.get("github")
    if github:
        r = requests.post(
            f"{github['api'].rstrip('/')}/repos/{github['repo']}/check-runs",
            json=check_run(sha),
            headers={
                "Authorization": f"Bearer {github['token']}",
                "Accept": "application/vnd.github+json",
            },
            timeout=10,
        )
        r.raise_for_status()
        log(origin, f"{tag}: check run CI success on {sha[:10]} (GitHub answered {r.status_code})")
    registry = Registry(config["registry"], scheme="http")
    for ref in images.publish_app(registry, config["prefix"], tag):
        log(origin, f"{tag}: published {ref}")


def log(origin: Path, line: str) -> None:
    with open(origin / LOG, "a") as f:
        f.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--build"]:
        origin, tag = Path(argv[1]), argv[2]
        try:
            build(origin, tag)
        except Exception as exc:  # the build fails as CI would: said in the log
            log(origin, f"{tag}: build FAILED: {type(exc).__name__}: {exc}")
            return 1
        return 0
    origin = Path(argv[0])
    for tag in release_tags(sys.stdin.read()):
        with open(origin / LOG, "a") as out:  # detached: the push does not wait for CI
            subprocess.Popen(
                [sys.executable, "-m", "testbed.app_ci", "--build", str(origin), tag],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                cwd=PROJECT,
                env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            )
        print(f"CI: build of {tag} queued")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
