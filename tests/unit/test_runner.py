"""The runner's failure paths: every kind of exception a step can meet runs the safety hooks,
writes the audit line, releases the lock and ends in one CerniqError; a run that died is
named by the next one; the lock is compared before it is deleted. Hosts are local shells
(tests/support/shellhost.py) over a tmp folder, so the lock and journal commands really run."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import replace

import pytest
from paramiko import SSHException
from pyinfra.api.exceptions import PyinfraError

from cerniq_ops import journal, lock, settings
from cerniq_ops.errors import BadInput, CerniqError, Interrupted, LockHeld, StepFailed
from cerniq_ops.procedure import Context, run, step
from tests.support.shellhost import ShellHost, patch_session

pytestmark = pytest.mark.unit
APP = "staging.cerniq.app"
DB = "staging-db.cerniq.app"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Staging settings with app_root in a tmp folder, both hosts local shells."""
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    monkeypatch.setenv("CERNIQ_OVERRIDE_APP_ROOT", str(tmp_path / "app"))
    hosts = {APP: ShellHost(APP), DB: ShellHost(DB)}
    patch_session(monkeypatch, hosts)
    s = settings.load("staging")
    return s, hosts, tmp_path / "app"


def context(s, **kw) -> Context:
    lines: list[str] = []
    ctx = Context(s, "deploy", version="v1.2.0", progress=lines.append, **kw)
    ctx.lines = lines  # type: ignore[attr-defined]
    return ctx


def audit_records(root) -> list[dict]:
    path = root / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_journal(root) -> dict:
    return json.loads((root / "last-run.json").read_text())


@step()
def first(ctx):
    return "did the first thing"


def failing(exc: BaseException):
    @step()
    def second(ctx):
        raise exc

    return second


HOOKED: list[str] = []


def switch_back(ctx):
    HOOKED.append(ctx.facts["failed_step"])
    return "switched back"


EXCEPTIONS = [
    (StepFailed("health check failed"), StepFailed, "health check failed"),
    (OSError("Socket is closed"), StepFailed, "unexpected OSError: Socket is closed"),
    (SSHException("SSH session not active"), StepFailed, "unexpected SSHException"),
    (TimeoutError(), StepFailed, "unexpected TimeoutError"),
    (json.JSONDecodeError("Expecting value", "<html>", 0), StepFailed, "JSONDecodeError"),
    (PyinfraError("operation failed"), StepFailed, "unexpected PyinfraError: operation failed"),
    (KeyError("active"), StepFailed, "unexpected KeyError: 'active'"),
    (KeyboardInterrupt(), Interrupted, "interrupted (Ctrl-C)"),
]


@pytest.mark.parametrize("raised,family,text", EXCEPTIONS, ids=lambda v: type(v).__name__)
def test_every_exception_runs_the_hooks_audits_and_releases_the_lock(env, raised, family, text):
    s, hosts, root = env
    HOOKED.clear()
    ctx = context(s)
    with pytest.raises(CerniqError) as caught:
        run((first, failing(raised)), ctx, on_failure=(switch_back,))
    assert type(caught.value) is family
    assert caught.value.exit_code == (130 if family is Interrupted else 1)
    message = str(caught.value)
    assert message.startswith("deploy to staging failed at step 'second': ")
    assert text in message and "\n" not in message
    assert HOOKED == ["second"]
    assert not (root / "deploy.lock").exists()
    results = [(r["step"], r["result"]) for r in audit_records(root)]
    expected = [("first", "ok"), ("second", "failed"), ("switch_back", "ok")]
    assert results == [r for r in expected for _host in (APP, DB)]  # both share this folder
    assert read_journal(root)["outcome"] == "failed"
    assert ctx.report.error and ctx.report.steps[-1].status == "failed"


def test_an_ssh_drop_inside_a_command_is_one_line_naming_the_host(env):
    s, hosts, root = env
    hosts[APP].fail_on[r"df -P"] = EOFError()

    @step()
    def check_disk(ctx):
        from cerniq_ops import hosts as h

        h.sh(ctx.primary, "df -P /")

    with pytest.raises(StepFailed) as caught:
        run((check_disk,), context(s), on_failure=(switch_back,))
    assert f"{APP}: SSH connection lost running `df -P /`: EOFError" in str(caught.value)
    assert not (root / "deploy.lock").exists()


def test_sigterm_stops_the_run_through_the_same_path(env):
    s, hosts, root = env
    HOOKED.clear()

    @step()
    def long_step(ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the signal right away

    with pytest.raises(StepFailed) as caught:
        run((first, long_step), context(s), on_failure=(switch_back,))
    assert "failed at step 'long_step': stopped by SIGTERM" in str(caught.value)
    assert HOOKED == ["long_step"] and not (root / "deploy.lock").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_sigterm_while_pyinfra_reads_a_command_in_a_greenlet_still_stops_the_run(env, capfd):
    """pyinfra reads each host command's output in gevent greenlets; a signal landing there
    once printed a traceback and let the run go on to the end (seen killing `invoke setup`)."""
    import gevent

    s, hosts, root = env
    HOOKED.clear()

    def reading():  # as pyinfra's read_buffer: the main thread runs this greenlet
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    went_on = []

    @step()
    def pyinfra_step(ctx):
        gevent.joinall([gevent.spawn(reading)])
        went_on.append(True)  # what the run did when the signal was dropped

    with pytest.raises(StepFailed) as caught:
        run((first, pyinfra_step), context(s), on_failure=(switch_back,))
    assert "failed at step 'pyinfra_step': stopped by SIGTERM" in str(caught.value)
    assert not went_on
    assert HOOKED == ["pyinfra_step"] and not (root / "deploy.lock").exists()
    assert "Traceback" not in capfd.readouterr().err


def test_a_refusal_in_a_step_runs_no_hook_and_writes_no_audit_line(env):
    s, hosts, root = env
    HOOKED.clear()
    with pytest.raises(BadInput):
        run((failing(BadInput("runs blue-green")),), context(s), on_failure=(switch_back,))
    assert HOOKED == [] and audit_records(root) == []
    assert not (root / "deploy.lock").exists()
    assert read_journal(root)["outcome"] == "refused"


def test_an_offline_refusal_connects_to_nothing(env):
    s, hosts, root = env

    @step(offline=True)
    def validate(ctx):
        raise BadInput("invalid --batch '0'")

    with pytest.raises(BadInput):
        run((validate, first), context(s), on_failure=(switch_back,))
    assert hosts[APP].commands == [] and hosts[DB].commands == []


def dead_pid() -> int:
    """A pid that surely runs no process (a child that has exited and been reaped)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_run_that_died_is_named_and_its_lock_released_only_as_seen(env):
    s, hosts, root = env
    root.mkdir(parents=True)
    died = replace(lock.new_record("deploy", "v1.2.0", ""), pid=dead_pid(), step="rolling_update")
    (root / "deploy.lock").write_text(lock.to_json(died))
    (root / "last-run.json").write_text(journal.entry(died, "running"))

    with pytest.raises(LockHeld) as caught:
        run((first,), context(s))
    assert (
        f"pid {died.pid} on {socket.gethostname()}, at step rolling_update; "
        "its holder is not running (the run died): run `invoke lock.release --env staging`"
    ) in str(caught.value)

    host = hosts[APP]
    text, held = lock.read(host, s)
    assert held.holder_alive() is False
    assert not lock.release_seen(host, s, text.replace("rolling_update", "other"))
    assert (root / "deploy.lock").exists()  # a lock other than the one seen is kept
    assert lock.release_seen(host, s, text)

    ctx = context(s)
    run((first,), ctx)
    notice = ctx.report.facts["previous_run"]
    assert notice.startswith(
        f"a previous run of deploy died at step rolling_update "
        f"(holder pid {died.pid} on {socket.gethostname()}, "
    )
    assert any(notice in line for line in ctx.lines)
    assert read_journal(root)["outcome"] == "ok"


def test_release_never_removes_a_lock_another_run_took(env):
    s, hosts, root = env
    mine = lock.new_record("deploy", "v1", "")
    theirs = lock.new_record("deploy", "v2", "")
    host = hosts[APP]
    lock.acquire(host, s, theirs)
    assert lock.release(host, s, mine) is False
    assert lock.status(host, s).token == theirs.token
    with pytest.raises(LockHeld):
        lock.refresh(host, s, mine)
    assert lock.release(host, s, theirs) is True and lock.status(host, s) is None


def test_a_lock_released_under_a_running_procedure_stops_it_at_the_next_step(env):
    s, hosts, root = env

    @step()
    def operator_releases(ctx):
        text, _ = lock.read(ctx.primary, s)
        assert lock.release_seen(ctx.primary, s, text)

    with pytest.raises(LockHeld) as caught:
        run((operator_releases, first), context(s))
    assert "no longer ours" in str(caught.value) and "stopped before step 'first'" in str(
        caught.value
    )


def test_a_run_inside_a_locked_run_works_under_its_lock_and_leaves_it_held(env):
    """release.finish's deploy: the inner run takes no second lock, marks its steps on the
    outer's record, and neither releases the lock nor ends the journal; the outer does both."""
    s, hosts, root = env
    seen: dict[str, object] = {}

    @step(offline=True)
    def validate(ctx):  # before the inner run's session: no journal mark, no host
        seen["validated"] = True

    @step()
    def rolling_update(ctx):
        seen["inner step"] = lock.status(ctx.primary, s).step

    @step()
    def deploy_production(ctx):
        inner = Context(
            s,
            "deploy",
            version="v1.2.0",
            progress=ctx.progress,
            locking=False,
            held_lock=ctx.held_lock,
        )
        run((validate, rolling_update), inner)
        seen["after inner"] = lock.status(ctx.primary, s)
        seen["journal"] = read_journal(root)["outcome"]

    @step()
    def merge_back(ctx):
        seen["last step token"] = lock.status(ctx.primary, s).token

    outer = context(s)
    outer.procedure = "release.finish"
    run((deploy_production, merge_back), outer)
    assert seen["validated"] and seen["inner step"] == "rolling_update"
    held = seen["after inner"]
    assert held is not None and held.procedure == "release.finish"
    assert seen["last step token"] == held.token  # the same lock all along
    assert seen["journal"] == "running"
    assert not (root / "deploy.lock").exists() and read_journal(root)["outcome"] == "ok"


def test_lock_wait_waits_for_the_holder_to_finish(env):
    s, hosts, root = env
    host = hosts[APP]
    other = lock.new_record("deploy", "v1", "CI job 1")  # our own pid: a live holder
    lock.acquire(host, s, other)
    threading.Timer(1.0, lambda: lock.release(host, s, other)).start()
    ctx = context(s, lock_wait=20)
    run((first,), ctx)
    assert any("waiting up to 20s for the deploy lock" in line for line in ctx.lines)
    with pytest.raises(LockHeld, match="run `invoke lock.status --env staging`"):
        lock.acquire(host, s, other)
        run((first,), context(s, lock_wait=0.5))


def test_a_long_step_keeps_the_lock_fresh(env, monkeypatch):
    s, hosts, root = env
    from cerniq_ops import procedure

    monkeypatch.setattr(procedure.Heartbeat, "__init__", _fast_heartbeat)
    seen: list[str] = []

    @step()
    def long_dump(ctx):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 2:
            record = lock.status(ctx.primary, s)
            if record.refreshed not in seen:
                seen.append(record.refreshed)
            time.sleep(0.2)

    run((long_dump,), context(s))
    assert len(seen) >= 2  # refreshed while the step ran, by the heartbeat alone


_original_init = __import__("cerniq_ops.procedure", fromlist=["Heartbeat"]).Heartbeat.__init__


def _fast_heartbeat(self, ctx, interval=None):
    _original_init(self, ctx, interval=0.3)


def test_a_change_outside_a_run_holds_the_same_lock_and_journal(env):
    """db.migrate / db.rollback (deploy_lock.held) share the runner's lock handling."""
    from cerniq_ops import deploy_lock

    s, hosts, root = env
    with deploy_lock.held(s, "db.migrate") as record:
        assert lock.status(hosts[APP], s).token == record.token
        assert read_journal(root)["run"]["step"] == "db.migrate"
    assert not (root / "deploy.lock").exists() and read_journal(root)["outcome"] == "ok"
    with pytest.raises(RuntimeError), deploy_lock.held(s, "db.rollback"):
        raise RuntimeError("migration failed")
    assert not (root / "deploy.lock").exists()
    assert read_journal(root)["outcome"] == "failed"
    assert read_journal(root)["error"] == "unexpected RuntimeError: migration failed"
