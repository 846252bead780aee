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


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("deploy", "--batch", "0"),
            "error: invalid --batch '0': a host count like 1 or a percentage like 50%",
        ),
        (
            ("deploy", "--batch", "abc"),
            "error: invalid --batch 'abc': a host count like 1 or a percentage like 50%",
        ),
        (
            ("deploy", "--lock-wait", "-1"),
            "error: invalid --lock-wait '-1': expected a number >= 0",
        ),
        (
            ("deploy", "--watch", "x", "--auto-rollback"),
            "error: invalid --watch 'x': expected a number >= 1",
        ),
        (
            ("db.migrate", "--lock-wait", "abc"),
            "error: invalid --lock-wait 'abc': expected a number >= 0",
        ),
        (
            ("history", "--limit", "abc"),
            "error: invalid --limit 'abc': expected a whole number >= 1",
        ),
        (
            ("rollback.check", "--window", "-5"),
            "error: invalid --window '-5': expected a number >= 1",
        ),
    ],
)
def test_bad_options_are_refused_before_anything_connects(args, message):
    """The real inventories' hosts cannot be reached from here: a refusal that tried to
    connect would say so (or hang) instead of naming the option."""
    task, *rest = args
    result = invoke(task, "--env", "staging", *rest)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == message
    assert "[2/" not in result.stdout  # no step past the offline validation


def test_task_help_after_the_task_name_and_a_missing_env_said_in_one_line():
    helped = invoke("deploy", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: inv[oke] [--core-opts] deploy [--options]")
    assert "--env=STRING" in helped.stdout
    positional = invoke("maintenance", "--help")  # STATE would have taken the word
    assert positional.returncode == 0, positional.stderr
    assert positional.stdout.startswith("Usage: inv[oke] [--core-opts] maintenance [--options]")
    missing = invoke("lock.status")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: --env is required; choose one of: staging, production"


def test_a_command_line_imports_only_the_task_modules_it_names():
    from tasks import wanted_modules

    assert wanted_modules(["/venv/bin/invoke", "lock.release", "--env", "x"]) == {"lock"}
    assert wanted_modules(["invoke", "deploy", "--env", "x", "verify"]) == {"deploy", "verify"}
    assert wanted_modules(["inv", "history", "--env", "x"]) == {"deploy"}
    assert wanted_modules(["invoke", "exec", "--env", "x", "--", "ls"]) == {"exec"}
    assert wanted_modules(["invoke", "test"]) == {"testrun"}
    assert wanted_modules(["invoke", "bluegreen.switch", "--env", "x"]) == {"bluegreen"}
    assert wanted_modules(["invoke", "--list"]) is None
    assert wanted_modules(["invoke", "nosuch"]) is None  # invoke then says what it is not
    assert wanted_modules(["pytest", "deploy"]) is None  # imported by a test: everything
    ran = invoke("--help", "lock.status")
    assert ran.returncode == 0 and "lock.status" in ran.stdout, ran.stderr
