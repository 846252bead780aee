"""The project's hooks (cerniq_ops.hooks) through the one runner: a failing pre-* hook stops
the procedure before it connects, on-failure runs on any failure, post-* after success, and
--skip-hooks or a dry run runs none. Hosts are local shells over a tmp folder
(tests/support/shellhost.py); hooks are real executables in a tmp hooks folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from cerniq_ops import hooks, settings
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context, run, step
from tests.support.shellhost import ShellHost, patch_session

pytestmark = pytest.mark.unit
APP = "staging.cerniq.app"
DB = "staging-db.cerniq.app"


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    monkeypatch.setenv("CERNIQ_OVERRIDE_APP_ROOT", str(tmp_path / "app"))
    monkeypatch.setenv("CERNIQ_OVERRIDE_HOOKS_DIR", str(tmp_path / "hooks"))
    monkeypatch.setenv("CERNIQ_ACTOR", "ana@laptop")
    (tmp_path / "hooks").mkdir()
    patch_session(monkeypatch, {APP: ShellHost(APP), DB: ShellHost(DB)})
    return settings.load("staging"), tmp_path


def hook(folder: Path, name: str, body: str, executable: bool = True) -> None:
    """A hook that records its environment in <name>.env, then runs BODY."""
    path = folder / "hooks" / name
    path.write_text(f"#!/bin/sh\nenv > {folder / name}.env\n{body}\n")
    path.chmod(0o755 if executable else 0o644)


HOOK_VARS = ("ENV", "VERSION", "PROCEDURE", "HOSTS", "PERFORMER", "FAILED_STEP", "ERROR")


def seen(folder: Path, name: str) -> dict | None:
    """What the hook NAME saw: the CERNIQ_* variables the runner gives hooks (None: not run)."""
    path = folder / f"{name}.env"
    if not path.exists():
        return None
    found = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in found.items() if k.removeprefix("CERNIQ_") in HOOK_VARS}


CHANGED: list[str] = []


@step(offline=True)
def validate(ctx):
    return "inputs ok"


@step()
def change_hosts(ctx):
    CHANGED.append(ctx.env)
    return "changed"


def context(s, procedure="deploy", **options) -> Context:
    lines: list[str] = []
    ctx = Context(s, procedure, version="v1.2.0", progress=lines.append, options=options)
    ctx.lines = lines  # type: ignore[attr-defined]
    return ctx


def test_event_names_of_procedures():
    assert hooks.event_for("deploy", "pre") == "pre-deploy"
    assert hooks.event_for("bluegreen.deploy", "post") == "post-deploy"
    assert hooks.event_for("bluegreen.switch", "pre") == "pre-switch"
    assert hooks.event_for("rollback", "post") == "post-rollback"
    assert hooks.event_for("db.migrate", "pre") is None


def test_hook_environment_names_env_version_procedure_hosts_performer():
    environment = hooks.hook_environment(
        {"PATH": "/bin"},
        env="production",
        version=None,
        procedure="bluegreen.switch",
        hosts=["prod-app1", "prod-app2"],
        performer="ana@laptop",
    )
    assert environment == {
        "PATH": "/bin",
        "CERNIQ_ENV": "production",
        "CERNIQ_VERSION": "",
        "CERNIQ_PROCEDURE": "bluegreen.switch",
        "CERNIQ_HOSTS": "prod-app1,prod-app2",
        "CERNIQ_PERFORMER": "ana@laptop",
    }


def test_describe_lists_hooks_and_warns_of_files_that_will_not_run():
    found, problems = hooks.describe(
        Path("/p/hooks"),
        {"pre-deploy": True, "on-failure": True, "post-deploy": False, "predeploy": True, ".x": 1},
    )
    assert found == ["on-failure", "pre-deploy"]
    assert problems == [
        "/p/hooks/post-deploy is not executable: it will not run (chmod +x)",
        "/p/hooks/predeploy is not a hook name (hooks: pre-deploy, post-deploy, pre-switch, "
        "post-switch, pre-rollback, post-rollback, on-failure)",
    ]


def test_a_failing_pre_hook_stops_before_any_connection_and_runs_on_failure(env):
    s, tmp = env
    CHANGED.clear()
    hook(tmp, "pre-deploy", "echo 'change freeze until Monday'; exit 3")
    hook(tmp, "on-failure", "exit 0")
    notified: list[str] = []

    def notify_failure(ctx):
        notified.append(ctx.facts["failed_step"])
        return "posted"

    ctx = context(s)
    with pytest.raises(StepFailed) as caught:
        run((validate, change_hosts), ctx, on_failure=(notify_failure,))
    assert str(caught.value) == (
        "deploy to staging stopped by its hook pre-deploy exited 3 "
        "(change freeze until Monday): stopped before any change"
    )
    assert CHANGED == [] and ctx.state is None  # never connected
    assert not (tmp / "app" / "audit.log").exists() and not (tmp / "app" / "deploy.lock").exists()
    assert notified == ["pre-deploy"]
    assert seen(tmp, "pre-deploy") == {
        "CERNIQ_ENV": "staging",
        "CERNIQ_HOSTS": APP,
        "CERNIQ_PERFORMER": "ana@laptop",
        "CERNIQ_PROCEDURE": "deploy",
        "CERNIQ_VERSION": "v1.2.0",
    }
    failure = seen(tmp, "on-failure")
    assert failure["CERNIQ_FAILED_STEP"] == "pre-deploy"
    assert failure["CERNIQ_ERROR"].startswith("hook pre-deploy exited 3")
    assert "      pre-deploy: change freeze until Monday" in ctx.lines
    assert [(r.name, r.status) for r in ctx.report.steps] == [
        ("validate", "ok"),
        ("pre-deploy", "failed"),
    ]


def test_post_hook_runs_after_success_and_its_failure_is_a_warning(env):
    s, tmp = env
    CHANGED.clear()
    hook(tmp, "pre-deploy", "exit 0")
    hook(tmp, "post-deploy", "echo cache purge failed; exit 1")
    ctx = context(s)
    report = run((validate, change_hosts), ctx)
    assert report.ok and CHANGED == ["staging"]
    assert seen(tmp, "post-deploy")["CERNIQ_PROCEDURE"] == "deploy"
    assert "      warning: hook post-deploy exited 1 (cache purge failed)" in ctx.lines
    assert ctx.facts["hooks"] == {"pre-deploy": 0, "post-deploy": 1}


def test_on_failure_runs_when_a_step_fails(env):
    s, tmp = env
    hook(tmp, "on-failure", "exit 0")

    @step()
    def roll(ctx):
        raise StepFailed("health check failed")

    with pytest.raises(StepFailed):
        run((validate, roll), context(s, "rollback"))
    assert seen(tmp, "on-failure")["CERNIQ_FAILED_STEP"] == "roll"
    assert seen(tmp, "on-failure")["CERNIQ_PROCEDURE"] == "rollback"


def test_skip_hooks_and_dry_runs_run_none_and_other_procedures_have_none(env):
    s, tmp = env
    hook(tmp, "pre-deploy", "exit 1")
    hook(tmp, "on-failure", "exit 0")
    assert run((validate, change_hosts), context(s, skip_hooks=True)).ok
    dry = context(s)
    dry.dry_run = True
    assert run((validate, change_hosts), dry).ok
    assert run((validate, change_hosts), context(s, "db.migrate")).ok
    assert seen(tmp, "pre-deploy") is None and seen(tmp, "on-failure") is None


def test_a_hook_that_is_not_executable_does_not_run(env):
    s, tmp = env
    hook(tmp, "pre-deploy", "exit 1", executable=False)
    assert run((validate, change_hosts), context(s)).ok
    assert seen(tmp, "pre-deploy") is None


def test_doctor_lists_the_hooks_found_and_warns_of_the_rest(env):
    from cerniq_ops import doctor

    s, tmp = env
    folder = tmp / "hooks"
    ok = doctor.hooks_finding(s, folder, {"pre-deploy": True, "post-deploy": True})
    assert ok == doctor.Finding("hooks", "staging", "ok", f"post-deploy, pre-deploy in {folder}")
    warn = doctor.hooks_finding(s, folder, {"pre-switch": False})
    assert (warn.status, warn.detail) == (
        "WARN",
        f"none in {folder}; {folder}/pre-switch is not executable: it will not run (chmod +x)",
    )
