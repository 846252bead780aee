"""One runner for every procedure: a procedure is a tuple of named steps, read like the seed.

The runner prints progress, holds the environment's deploy lock, writes an audit line per step
on every host, stops at the first failure, runs the failure hooks (notify, switch back) and
reports which step failed and what state the hosts are in. A new procedure is a new tuple of
steps, not a new runner.

A step is a function `step(ctx) -> str | None` (the returned text is its one-line outcome).
Steps marked `@step(offline=True)` run before any connection (input validation, prompts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from pyinfra.api import State
from pyinfra.api.host import Host

from cerniq_ops import audit, hooks, hosts, journal, lock, signals
from cerniq_ops.errors import BadInput, CerniqError, Interrupted, StepFailed
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
    lock_wait: float = 0  # seconds to wait for a held lock (CI queues)
    login: str | None = None  # who the run's session logs in as (None: ssh_user; setup: root)
    heartbeat: Heartbeat | None = None
    repairs: list[str] = field(default_factory=list)
    report: Report | None = None  # set when run() starts; complete when it ends

    def repaired(self, line: str) -> None:
        """Record and print a repair of state an earlier (killed or failed) run left behind."""
        self.repairs.append(line)
        if self.report is not None:
            self.report.repairs.append(line)
        self.note(f"repaired: {line}")

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
    repairs: list[str] = field(default_factory=list)
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
    """Walk STEPS; on any failure run ON_FAILURE hooks and raise a CerniqError naming the step.

    Whatever stops a step (a CerniqError, any other exception, Ctrl-C, SIGTERM) goes through
    the same path: the hooks run (with further signals held off), an audit line is written, the
    lock is released, and the caller gets one CerniqError. A BadInput from a step is a refusal:
    nothing changed, so no hook runs and nothing is audited.
    """
    report = Report(ctx.procedure, ctx.env, ctx.version, ctx.dry_run)
    ctx.report = report
    offline = [s for s in steps if getattr(s, "offline", False)]
    online = [s for s in steps if not getattr(s, "offline", False)]
    total = len(steps)
    numbered = {step_name(s): i for i, s in enumerate(steps, 1)}
    failed_at: str | None = None

    def do(s: Step) -> None:
        nonlocal failed_at
        failed_at = name = step_name(s)
        ctx.progress(f"[{numbered[name]}/{total}] {name}")
        if ctx.held_lock is not None and ctx.state is not None:  # offline steps come first
            journal.mark(ctx, name)
        start = time.monotonic()
        try:
            detail = s(ctx) or ""
        except BaseException as exc:
            error = describe_exception(exc)
            report.steps.append(
                StepReport(name, "failed", error, round(time.monotonic() - start, 2))
            )
            if not isinstance(exc, BadInput):
                _audit(ctx, s, "failed", error)
            raise
        seconds = time.monotonic() - start
        status = "dry-run" if ctx.dry_run else "ok"
        report.steps.append(StepReport(name, status, detail, round(seconds, 2)))
        ctx.progress(f"      {status}{f': {detail}' if detail else ''} ({seconds:.1f}s)")
        _audit(ctx, s, "ok", detail)

    title = f"{ctx.procedure} {ctx.version or ''} to {ctx.env}".replace("  ", " ")
    try:
        with signals.terminate_raises():
            ctx.progress(f"== {title}{' (dry run: nothing will change)' if ctx.dry_run else ''}")
            for s in offline:
                do(s)
            _pre_hook(ctx, on_failure)  # the project's pre-* hook: before any connection
            # a procedure of offline steps only (release.start: git and GitHub) connects nowhere
            session = hosts.session(ctx.settings, user=ctx.login) if online else nullcontext()
            with session as state:
                ctx.state = state
                # a run inside another (release.finish's deploy) works under the outer's lock
                took_lock = ctx.locking and not ctx.dry_run and bool(online)
                if took_lock:
                    _take_lock(ctx)
                try:
                    for s in online:
                        do(s)
                except BaseException as exc:
                    if isinstance(exc, BadInput):  # a refusal: nothing changed
                        if took_lock:
                            journal.finish(ctx, "refused", str(exc))
                        raise
                    error = describe_exception(exc)
                    report.error = error
                    ctx.facts.update(failed_step=failed_at, error=error)
                    with signals.held_off(ctx.progress):
                        _run_hooks(ctx, on_failure)
                        _project_hook(ctx, hooks.on_failure)
                        where = _describe(ctx, describe_state)
                        if took_lock:
                            journal.finish(ctx, "failed", error)
                    failed = f"{ctx.procedure} to {ctx.env} failed at step '{failed_at}'"
                    raise as_cerniq(exc, f"{failed}: {error}{where}") from exc
                else:
                    if took_lock:
                        journal.finish(ctx, "ok", "")
                finally:
                    if took_lock:
                        with signals.held_off(ctx.progress):
                            _release_lock(ctx)
    except BaseException as exc:
        report.error = report.error or describe_exception(exc)
        report.facts = dict(ctx.facts)
        if isinstance(exc, CerniqError):
            raise
        raise as_cerniq(exc, f"{ctx.procedure} to {ctx.env}: {describe_exception(exc)}") from exc
    report.ok = True
    report.version = ctx.version  # a step may resolve it (release.finish: from the branch)
    _project_hook(ctx, hooks.after)  # the lock is released: a slow hook holds nobody up
    report.facts = dict(ctx.facts)
    if ctx.repairs:
        ctx.progress(f"== repaired what an earlier run left: {'; '.join(ctx.repairs)}")
    return report


def describe_exception(exc: BaseException) -> str:
    """One line for any exception: ours as they are, others with their type named."""
    if isinstance(exc, CerniqError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, signals.Terminated):
        return f"stopped by {exc.signal_name}"
    text = str(exc).strip().splitlines()
    return f"unexpected {type(exc).__name__}{f': {text[0]}' if text else ''}"


def as_cerniq(exc: BaseException, message: str) -> CerniqError:
    """The CerniqError the user sees for EXC: same family for ours, Interrupted for Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(message)
    if isinstance(exc, CerniqError):
        return type(exc)(message)
    return StepFailed(message)


def _describe(ctx: Context, describe_state: Callable[[Context], str] | None) -> str:
    if describe_state is None:
        return ""
    try:
        return f"; {describe_state(ctx)}"
    except Exception as exc:  # the report must not hide the failure
        return f"; state unknown ({describe_exception(exc)})"


def _take_lock(ctx: Context) -> None:
    record = lock.new_record(ctx.procedure, ctx.version, ctx.message)
    lock.acquire(ctx.primary, ctx.settings, record, wait=ctx.lock_wait, progress=ctx.progress)
    ctx.held_lock = record
    previous = journal.previous_death(ctx)
    if previous:
        ctx.facts["previous_run"] = previous
        ctx.progress(f"      {previous}; this run converges from what it left")
    ctx.heartbeat = Heartbeat(ctx)
    ctx.heartbeat.start()


@contextmanager
def locked(ctx: Context) -> Iterator[None]:
    """Hold CTX's deploy lock around a change made outside `run` (db.migrate, db.rollback),
    with what `run` gives its steps: heartbeat, journal, the previous run's death notice,
    SIGTERM as an exception, and the release whatever ends the block. Needs ctx.state."""
    with signals.terminate_raises():
        _take_lock(ctx)
        try:
            journal.mark(ctx, ctx.procedure)
            yield
        except BaseException as exc:
            with signals.held_off(ctx.progress):
                journal.finish(ctx, "failed", describe_exception(exc))
            raise
        else:
            journal.finish(ctx, "ok", "")
        finally:
            with signals.held_off(ctx.progress):
                _release_lock(ctx)


def _release_lock(ctx: Context) -> None:
    if ctx.heartbeat is not None:
        ctx.heartbeat.stop()
        ctx.heartbeat = None
    if ctx.held_lock is None:
        return
    try:
        if not lock.release(ctx.primary, ctx.settings, ctx.held_lock):
            ctx.progress("      warning: the deploy lock was no longer ours; left it alone")
    except Exception as exc:
        ctx.progress(
            f"      warning: could not release the deploy lock ({describe_exception(exc)}); "
            f"run `invoke lock.release --env {ctx.env}`"
        )
    ctx.held_lock = None


class Heartbeat:
    """Refreshes the held lock while a long step works, so it is never judged stale."""

    def __init__(self, ctx: Context, interval: float | None = None) -> None:
        self.ctx = ctx
        max_age = ctx.settings.deploy_lock_max_age_minutes * 60
        self.interval = interval or max(1.0, min(60.0, max_age / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cerniq-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            record = self.ctx.held_lock
            if record is None:
                return
            try:
                self.ctx.held_lock = lock.refresh(self.ctx.primary, self.ctx.settings, record)
            except Exception as exc:  # a missed beat is retried; the step is not disturbed
                self.ctx.progress(f"      warning: lock heartbeat: {describe_exception(exc)}")


def _pre_hook(ctx: Context, on_failure: Sequence[Step]) -> None:
    """The project's pre-* hook (cerniq_ops.hooks). Exiting non-zero stops the procedure
    before it connects: the failure path runs (the procedure's failure hooks, on-failure) and
    the error names the hook; nothing on the hosts changed."""
    start = time.monotonic()
    try:
        detail = hooks.before(ctx)
    except CerniqError as exc:
        name = hooks.event_for(ctx.procedure, "pre") or "pre"
        error = str(exc)
        ctx.report.steps.append(  # type: ignore[union-attr]
            StepReport(name, "failed", error, round(time.monotonic() - start, 2))
        )
        ctx.report.error = error  # type: ignore[union-attr]
        ctx.facts.update(failed_step=name, error=error)
        ctx.progress(f"      {error}")
        with signals.held_off(ctx.progress):
            _run_hooks(ctx, on_failure)
            _project_hook(ctx, hooks.on_failure)
        raise StepFailed(f"{ctx.procedure} to {ctx.env} stopped by its {error}") from exc
    if detail:
        ctx.progress(f"      {detail}")


def _project_hook(ctx: Context, fire: Callable[[Context], str | None]) -> None:
    """A post-* or on-failure hook of the project: its outcome is a line, never an error."""
    try:
        detail = fire(ctx)
    except Exception as exc:  # a hook must never hide the outcome of the procedure
        detail = f"warning: hook failed to run: {describe_exception(exc)}"
    if detail:
        ctx.progress(f"      {detail}")


def _run_hooks(ctx: Context, hooks: Sequence[Step]) -> None:
    for hook in hooks:
        try:
            detail = hook(ctx)
            ctx.progress(f"      on failure: {step_name(hook)}{f': {detail}' if detail else ''}")
            _audit(ctx, hook, "ok", detail or "")
        except Exception as exc:  # a hook must never hide the original failure
            error = describe_exception(exc)
            ctx.progress(f"      on failure: {step_name(hook)} failed too: {error}")
            _audit(ctx, hook, "failed", error)


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
        except Exception as exc:  # an unreachable host must not stop the others' record
            error = describe_exception(exc)
            ctx.progress(f"      warning: audit line not written on {spec.name}: {error}")
