"""The command line as a user meets it: help for every task, one-line errors, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
PROJECT = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")


def invoke(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [INVOKE, *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CERNIQ_TARGET": "real", **(env or {})},
    )


def test_every_task_has_a_help_line():
    listing = invoke("--list")
    assert listing.returncode == 0, listing.stderr
    tasks = [line.split()[0] for line in listing.stdout.splitlines()[2:] if line.startswith("  ")]
    assert {"env.show", "testbed.up", "testbed.down", "testbed.status", "demo"} <= set(tasks)
    for line in listing.stdout.splitlines()[2:]:
        if line.startswith("  ") and not line.startswith("    "):
            assert len(line.split(maxsplit=1)) == 2, f"task without help: {line!r}"


def test_unknown_environment_is_one_line_and_exit_2():
    result = invoke("env.show", "--env", "nope")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown environment 'nope'; choose one of: staging, production"
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_env_show_redacts_secrets():
    secret = "s3cr3t-value-that-must-not-print"
    result = invoke("env.show", "--env", "staging", env={"CERNIQ_STAGING_DB_PASSWORD": secret})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout
    assert "CERNIQ_STAGING_DB_PASSWORD (set)" in result.stdout
    assert "staging-db.cerniq.app" in result.stdout


def test_env_show_json_is_machine_readable():
    import json

    result = invoke("env.show", "--env", "production", "--json")
    view = json.loads(result.stdout)
    assert view["env"] == "production" and view["public_url"] == "https://app.cerniq.app"
    assert [h["name"] for h in view["hosts"]][:2] == ["app1.cerniq.app", "app2.cerniq.app"]
