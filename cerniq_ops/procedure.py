"""One runner for every procedure: a procedure is a tuple of named steps, read like the seed.

The runner prints progress, holds the environment's deploy lock, writes an audit line per step
on every host, stops at the first failure, runs the failure hooks (notify, switch back) and
reports which step failed and what state the hosts are in. A new procedure is a new tuple of
steps, not a new runner.

A step is a function `step(ctx) -> str | None` (the returned text is its one-line outcome).
Steps marked `@step(offline=True)` run before any connection (input validation, prompts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pyinfra.api import State
from pyinfra.api.host import Host

from cerniq_ops import audit, hosts, lock
from cerniq_ops.errors import CerniqError
from cerniq_ops.output import say
from cerniq_ops.settings import HostSpec, Settings

Step = Callable[["Context"], str | None]


def step(*, offline: bool = False, audited: bool = True) -> Callable[[Step], Step]:
    """Mark a step: `offline` steps run before connecting; `audited` ones write audit lines."""

    def mark(fn: Step) -> Step:
        fn.offline = offline  # type: ignore[attr-defined]
        fn.audited = audited  # type: ignore[attr-defined]
        return fn

    return mark


def step_name(fn: Step) -> str:
    return fn.__name__


@dataclass
class Context:
    """What a procedure run knows: settings, inputs, and what its steps learn on the way."""

    settings: Settings
    procedure: str
    version: str | None = None
    dry_run: bool = False
    message: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    state: State | None = None
    progress: Callable[[str], None] = say
    locking: bool = True
    held_lock: lock.LockRecord | None = None
    report: Report | None = None  # set when run() ends, failed or not
    repairs: list[str] = field(default_factory=list)

    @property
    def env(self) -> str:
        return self.settings.env

    def host(self, spec: HostSpec | str) -> Host:
        assert self.state is not None, "steps that use hosts must not be offline"
        return self.state.inventory.get_host(spec if isinstance(spec, str) else spec.name)

    @property
    def primary(self) -> Host:
        return self.host(self.settings.primary_host)

    @property
    def app_hosts(self) -> list[Host]:
        return [self.host(h) for h in self.settings.app_hosts]

    def note(self, line: str) -> None:
        """A progress line under the current step."""
        self.progress(f"      {line}")

    def repaired(self, line: str) -> None:
        """Record and print a repair of state an earlier (killed or failed) run left behind."""
        self.repairs.append(line)
        self.note(f"repaired: {line}")


@dataclass
class StepReport:
    name: str
    status: str  # ok | failed | dry-run
    detail: str
    seconds: float


@dataclass
class Report:
    procedure: str
    env: str
    version: str | None
    dry_run: bool
    steps: list[StepReport] = field(default_factory=list)
    ok: bool = False
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(
    steps: Sequence[Step],
    ctx: Context,
    *,
    on_failure: Sequence[Step] = (),
    describe_state: Callable[[Context], str] | None = None,
) -> Report:
    """Walk STEPS; on a failure run ON_FAILURE hooks and re-raise with the step named."""
    report = Report(ctx.procedure, ctx.env, ctx.version, ctx.dry_run)
    offline = [s for s in steps if getattr(s, "offline", False)]
    online = [s for s in steps if not getattr(s, "offline", False)]
    total = len(steps)
    numbered = {step_name(s): i for i, s in enumerate(steps, 1)}
    title = f"{ctx.procedure} {ctx.version or ''} to {ctx.env}".replace("  ", " ")
    ctx.progress(f"== {title}{' (dry run: nothing will change)' if ctx.dry_run else ''}")

    def do(s: Step) -> None:
        name = step_name(s)
        ctx.progress(f"[{numbered[name]}/{total}] {name}")
        start = time.monotonic()
        try:
            detail = s(ctx) or ""
        except CerniqError as exc:
            seconds = time.monotonic() - start
            report.steps.append(StepReport(name, "failed", str(exc), round(seconds, 2)))
            _audit(ctx, s, "failed", str(exc))
            raise
        seconds = time.monotonic() - start
        status = "dry-run" if ctx.dry_run else "ok"
        report.steps.append(StepReport(name, status, detail, round(seconds, 2)))
        ctx.progress(f"      {status}{f': {detail}' if detail else ''} ({seconds:.1f}s)")
        _audit(ctx, s, "ok", detail)

    failed_at: str | None = None
    try:
        for s in offline:
            failed_at = step_name(s)
            do(s)
        with hosts.session(ctx.settings) as state:
            ctx.state = state
            if ctx.locking and not ctx.dry_run:
                ctx.held_lock = lock.new_record(ctx.procedure, ctx.version, ctx.message)
                lock.acquire(ctx.primary, ctx.settings, ctx.held_lock)
            try:
                for s in online:
                    failed_at = step_name(s)
                    do(s)
            except CerniqError as exc:
                report.error = str(exc)
                ctx.facts.update(failed_step=failed_at, error=str(exc))
                _run_hooks(ctx, on_failure)
                where = f"; {describe_state(ctx)}" if describe_state else ""
                raise type(exc)(
                    f"{ctx.procedure} to {ctx.env} failed at step '{failed_at}': {exc}{where}"
                ) from exc
            finally:
                if ctx.held_lock:
                    lock.release(ctx.primary, ctx.settings, ctx.held_lock)
                    ctx.held_lock = None
    except CerniqError as exc:
        report.error = report.error or str(exc)
        report.facts = dict(ctx.facts)
        ctx.report = report
        raise
    report.ok = True
    report.facts = dict(ctx.facts)
    ctx.report = report
    return report


def _run_hooks(ctx: Context, hooks: Sequence[Step]) -> None:
    for hook in hooks:
        try:
            detail = hook(ctx)
            ctx.progress(f"      on failure: {step_name(hook)}{f': {detail}' if detail else ''}")
            _audit(ctx, hook, "ok", detail or "")
        except Exception as exc:  # a hook must never hide the original failure
            ctx.progress(f"      on failure: {step_name(hook)} failed too: {exc}")
            _audit(ctx, hook, "failed", str(exc))


def _audit(ctx: Context, s: Step, result: str, detail: str) -> None:
    if ctx.dry_run or ctx.state is None or not getattr(s, "audited", True):
        return
    line = audit.audit_line(
        env=ctx.env,
        procedure=ctx.procedure,
        step=step_name(s),
        result=result,
        who=audit.actor(),
        version=ctx.version,
        detail=detail,
    )
    for spec in ctx.settings.hosts:
        try:
            audit.append(ctx.host(spec), ctx.settings, line)
        except CerniqError as exc:
            ctx.progress(f"      warning: audit line not written on {spec.name}: {exc}")
