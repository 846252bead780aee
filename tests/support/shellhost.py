"""A stand-in for a pyinfra host that runs each command in a local bash: the runner's lock,
journal and audit commands meet a real shell and a real file system (a tmp folder as the
host's app_root), without SSH. `fail_on` makes a command matching a pattern raise an exception,
as a dropped SSH connection or a timeout would."""

from __future__ import annotations

import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Output:
    stdout_lines: list[str]
    stderr_lines: list[str]


@dataclass
class ShellHost:
    name: str
    commands: list[str] = field(default_factory=list)
    fail_on: dict[str, BaseException] = field(default_factory=dict)  # regex -> exception
    connector: object = None  # no SSH client: hosts.reconnect leaves it alone

    def run_shell_command(self, command, _timeout=None, **_):
        text = command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)
        self.commands.append(text)
        for pattern, exc in self.fail_on.items():
            if re.search(pattern, text):
                raise exc
        done = subprocess.run(["bash", "-c", text], capture_output=True, text=True)
        return done.returncode == 0, Output(done.stdout.splitlines(), done.stderr.splitlines())

    def put_file(self, data, path, **_):
        with open(path, "wb") as f:
            f.write(data.read())
        return True


class Inventory:
    def __init__(self, hosts: dict[str, ShellHost]) -> None:
        self.hosts = hosts

    def get_host(self, name: str) -> ShellHost:
        return self.hosts[name]


@dataclass
class FakeState:
    inventory: Inventory


def patch_session(monkeypatch, hosts: dict[str, ShellHost]) -> None:
    """Make cerniq_ops.hosts.session yield a state over HOSTS (no SSH)."""
    from cerniq_ops import hosts as hosts_mod

    @contextmanager
    def session(_settings, _hosts=None, user=None):
        yield FakeState(Inventory(hosts))

    monkeypatch.setattr(hosts_mod, "session", session)
