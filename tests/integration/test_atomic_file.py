"""deploys.operations.atomic_file run by pyinfra for real, on this machine (pyinfra's @local
connector): the content and mode arrive in one rename, a converged run changes nothing, a dry
run plans without touching, and what a killed upload left is replaced."""

from __future__ import annotations

import os
import stat

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state

from deploys.operations import atomic_file, temp_path

pytestmark = pytest.mark.integration


def apply(path, content: str, mode: str, dry: bool = False) -> bool:
    """atomic_file(PATH, CONTENT, MODE) through a pyinfra State on @local; whether it changed
    something (planned to, with DRY)."""
    state = State(Inventory((["@local"], {})), Config())
    state.check_for_changes = dry
    connect_all(state)
    try:
        add_op(state, atomic_file, path=str(path), content=content, mode=mode)
        (host,) = state.inventory
        if dry:  # planned: the operation yields commands (facts read, nothing run)
            with ctx_state.use(state), ctx_host.use(host):
                return any(
                    any(True for _ in op.command_generator()) for op in state.ops[host].values()
                )
        run_ops(state)
        return any(op.operation_meta.did_change() for op in state.ops[host].values())
    finally:
        disconnect_all(state)


def mode_of(path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))[2:]


def test_a_file_arrives_whole_with_its_mode_and_a_second_run_changes_nothing(tmp_path):
    env = tmp_path / "app" / ".env"  # its folder does not exist yet
    assert apply(env, "A=1\n", "600")
    assert env.read_text() == "A=1\n" and mode_of(env) == "600"
    assert not os.path.exists(temp_path(str(env)))
    assert not apply(env, "A=1\n", "600")  # converged: content, mode and owner match
    assert apply(env, "A=1\n", "640") and mode_of(env) == "640"  # a mode alone is a change
    inode = os.stat(env).st_ino
    assert apply(env, "A=2\n", "640") and env.read_text() == "A=2\n"
    assert os.stat(env).st_ino != inode  # renamed over, not written into


def test_a_dry_run_plans_the_change_and_touches_nothing(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("old\n")
    assert apply(compose, "new\n", "644", dry=True)
    assert compose.read_text() == "old\n"
    assert not os.path.exists(temp_path(str(compose)))
    assert not apply(compose, "old\n", mode_of(compose), dry=True)


def test_what_a_killed_upload_left_is_replaced(tmp_path):
    active = tmp_path / "active.yml"
    active.write_text("http: {}\n")
    left = temp_path(str(active))
    with open(left, "w") as f:  # a run killed during its upload: half a file, someone's mode
        f.write("http: {rou")
    os.chmod(left, 0o644)
    assert apply(active, "http:\n  routers: {}\n", "644")
    assert active.read_text() == "http:\n  routers: {}\n"
    assert not os.path.exists(left)


def test_an_apply_whose_ssh_channel_would_not_open_runs_once_more(tmp_path, monkeypatch):
    """hosts.apply over a State: a command whose channel never opened (paramiko's
    SSHException 'Unable to open channel.', raised as a connection goes) fails the host's
    operation; the apply runs the idempotent operations again and reports the change once."""
    from types import SimpleNamespace

    from paramiko import SSHException
    from pyinfra.api import deploy
    from pyinfra.connectors.local import LocalConnector

    from cerniq_ops import hosts

    target = tmp_path / "current-version"

    @deploy("one marker")
    def one_marker():
        atomic_file(name=str(target), path=str(target), content="v1.2.0\n", mode="644")

    real, calls = LocalConnector.run_shell_command, []

    def flaky(self, command, **kwargs):
        calls.append(str(command))
        if len(calls) == 1:
            raise SSHException(hosts.CHANNEL_NOT_OPENED)
        return real(self, command, **kwargs)

    monkeypatch.setattr(LocalConnector, "run_shell_command", flaky)
    state = State(Inventory((["@local"], {})), Config(FAIL_PERCENT=0))
    connect_all(state)
    try:
        changes = hosts.apply(state, [SimpleNamespace(name="@local")], one_marker)
    finally:
        disconnect_all(state)
    assert changes == [f"@local: one marker | {target}"]  # once, though it ran twice
    assert target.read_text() == "v1.2.0\n" and len(calls) > 1
