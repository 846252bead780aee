"""Hooks (Kamal's `.kamal/hooks`): the project's own executables run around a procedure.

The hooks folder is the setting `hooks_dir` (default `hooks`, relative to the project). Its
executables named after an event run on this machine, not on the hosts:

  pre-deploy / post-deploy       `invoke deploy`, `bluegreen.deploy`, `bluegreen.canary`
  pre-switch / post-switch       `invoke bluegreen.switch`
  pre-rollback / post-rollback   `invoke rollback`
  on-failure                     any of them failing (after the procedure's own failure hooks)

They run with CERNIQ_ENV, CERNIQ_VERSION (empty while not known yet: a switch, rollback
--previous), CERNIQ_PROCEDURE, CERNIQ_HOSTS (the app hosts, comma-separated inventory names)
and CERNIQ_PERFORMER (who runs it, as in the audit log); on-failure also gets
CERNIQ_FAILED_STEP and CERNIQ_ERROR. The runner (cerniq_ops.procedure) calls them: a pre-*
hook after the offline steps (input checked, confirmation given) and before any connection,
so one that exits non-zero stops the procedure with nothing changed; a post-* hook once every
step succeeded and the lock is released (its failure is a warning: the change is done).
`--skip-hooks` or a dry run runs none. Pure functions (which hook, its environment) are apart
from the one that runs it.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cerniq_ops.errors import StepFailed
from cerniq_ops.output import redact
from cerniq_ops.settings import PROJECT_DIR, Settings

EVENTS = (
    "pre-deploy",
    "post-deploy",
    "pre-switch",
    "post-switch",
    "pre-rollback",
    "post-rollback",
    "on-failure",
)
PROCEDURE_EVENTS = {  # procedure -> the event name its pre-/post- hooks carry
    "deploy": "deploy",
    "bluegreen.deploy": "deploy",
    "bluegreen.canary": "deploy",
    "bluegreen.switch": "switch",
    "rollback": "rollback",
}
TIMEOUT_SECONDS = 600
OUTPUT_LINES = 20  # a hook's last lines shown under the step


@dataclass(frozen=True)
class Outcome:
    event: str
    path: str
    code: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    def last_line(self) -> str:
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "no output"


# -- pure ------------------------------------------------------------------------------------
def hooks_dir(s: Settings) -> Path:
    """The hooks folder: the setting hooks_dir, relative to the project unless absolute."""
    return (PROJECT_DIR / s.hooks_dir).resolve()


def event_for(procedure: str, phase: str) -> str | None:
    """`deploy`, `pre` -> `pre-deploy`; None for a procedure without hooks (db.*, backup.*)."""
    name = PROCEDURE_EVENTS.get(procedure)
    return f"{phase}-{name}" if name else None


def hook_environment(
    base: dict[str, str],
    *,
    env: str,
    version: str | None,
    procedure: str,
    hosts: list[str],
    performer: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """BASE (this process' environment) with the CERNIQ_* variables a hook reads."""
    return {
        **base,
        "CERNIQ_ENV": env,
        "CERNIQ_VERSION": version or "",
        "CERNIQ_PROCEDURE": procedure,
        "CERNIQ_HOSTS": ",".join(hosts),
        "CERNIQ_PERFORMER": performer,
        **(extra or {}),
    }


def describe(folder: Path, entries: dict[str, bool]) -> tuple[list[str], list[str]]:
    """(hooks found, problems) from ENTRIES {file name: executable} of FOLDER: a hook's name
    that is not executable, or a file named like no event, is a problem worth a warning."""
    found, problems = [], []
    for name in sorted(entries):
        if name.startswith(".") or name.endswith((".sample", ".md")):
            continue
        if name not in EVENTS:
            problems.append(f"{folder / name} is not a hook name (hooks: {', '.join(EVENTS)})")
        elif not entries[name]:
            problems.append(f"{folder / name} is not executable: it will not run (chmod +x)")
        else:
            found.append(name)
    return found, problems


def scan(folder: Path) -> dict[str, bool]:
    """{file name: executable} of the files in FOLDER (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    return {p.name: os.access(p, os.X_OK) for p in folder.iterdir() if p.is_file()}


def find(s: Settings, event: str) -> Path | None:
    path = hooks_dir(s) / event
    return path if path.is_file() and os.access(path, os.X_OK) else None


# -- running ---------------------------------------------------------------------------------
def run_hook(path: Path, event: str, environment: dict[str, str]) -> Outcome:
    """Run one hook (stdin closed, stdout and stderr together, in the project folder)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(path)],
            cwd=PROJECT_DIR,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output if isinstance(exc.output, str) else ""
        return Outcome(event, str(path), 124, output + f"\ntimed out after {TIMEOUT_SECONDS}s", 0)
    except OSError as exc:  # e.g. a bad #! line
        return Outcome(event, str(path), 126, f"could not run: {exc}", 0)
    return Outcome(event, str(path), proc.returncode, proc.stdout, time.monotonic() - start)


def fire(ctx, phase: str, extra: dict[str, str] | None = None) -> Outcome | None:
    """Run CTX's procedure's hook of PHASE (pre, post, or `on` for on-failure), if present and
    not skipped; its output shown under the current step. None when no hook ran."""
    from cerniq_ops.audit import actor

    if ctx.dry_run or ctx.options.get("skip_hooks"):
        return None
    event = "on-failure" if phase == "on" else event_for(ctx.procedure, phase)
    if event is None or (phase == "on" and ctx.procedure not in PROCEDURE_EVENTS):
        return None
    path = find(ctx.settings, event)
    if path is None:
        return None
    environment = hook_environment(
        dict(os.environ),
        env=ctx.env,
        version=ctx.version,
        procedure=ctx.procedure,
        hosts=[h.name for h in ctx.settings.app_hosts],
        performer=actor(),
        extra=extra,
    )
    outcome = run_hook(path, event, environment)
    for line in outcome.output.rstrip().splitlines()[-OUTPUT_LINES:]:
        ctx.note(f"{event}: {line}")
    ctx.facts.setdefault("hooks", {})[event] = outcome.code
    return outcome


def before(ctx) -> str | None:
    """The pre-* hook; StepFailed (nothing changed) when it exits non-zero."""
    outcome = fire(ctx, "pre")
    if outcome is None:
        return None
    if not outcome.ok:
        raise StepFailed(
            f"hook {outcome.event} exited {outcome.code} ({outcome.last_line()}): "
            "stopped before any change"
        )
    return f"hook {outcome.event} passed ({outcome.seconds:.1f}s)"


def after(ctx) -> str | None:
    """The post-* hook; its failure is a warning line (the change is done)."""
    outcome = fire(ctx, "post")
    if outcome is None:
        return None
    if not outcome.ok:
        return f"warning: hook {outcome.event} exited {outcome.code} ({outcome.last_line()})"
    return f"hook {outcome.event} passed ({outcome.seconds:.1f}s)"


def on_failure(ctx) -> str | None:
    """The on-failure hook, told which step failed and why."""
    extra = {
        "CERNIQ_FAILED_STEP": str(ctx.facts.get("failed_step") or ""),
        "CERNIQ_ERROR": redact(str(ctx.facts.get("error") or "")),
    }
    outcome = fire(ctx, "on", extra)
    if outcome is None:
        return None
    if not outcome.ok:
        return f"hook on-failure exited {outcome.code} ({outcome.last_line()})"
    return "hook on-failure ran"
