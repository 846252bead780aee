"""A fake pyinfra host for unit tests of logic that runs commands: it records every command
and answers scripted outputs, chosen by command prefix or regular expression.

    host = FakeHost("app1")
    host.on("docker ps", "abc reg/api:v1 api running Up (healthy)", "")  # in turn; last repeats
    host.on(re.compile(r"^curl .*/services/api@docker"), lambda cmd: Reply("{}\\n200"))
    ... code under test calls cerniq_ops.hosts.sh(host, ...) ...
    assert host.commands == ["docker ps ...", ...]

Rules are tried in the order they were added; the first that matches answers. An answer is a
string (stdout, success), a Reply (stdout, stderr, ok) or a callable taking the command text and
returning either. A command no rule matches succeeds with no output (or fails the test when the
host is `strict`). Uploaded files (`put_file`) land in `files`; an exclusive create
(deploys.operations.link_new_command) moves the upload to its name unless that name is taken.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinfra.connectors.util import CommandOutput, OutputLine


@dataclass(frozen=True)
class Reply:
    stdout: str = ""
    stderr: str = ""
    ok: bool = True


Answer = str | Reply | Callable[[str], "str | Reply"]
LINK_NEW = re.compile(r"if ln (\S+) (\S+) 2>/dev/null; then")


class FakeHost:
    def __init__(self, name: str = "app1", data: Any = None, *, strict: bool = False):
        self.name = name
        self.data = data
        self.strict = strict
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}
        self._rules: list[tuple[str | re.Pattern, list[Answer]]] = []

    def on(self, match: str | re.Pattern, *answers: Answer) -> FakeHost:
        """Answer commands starting with MATCH (a str) or searched by MATCH (a regex) with
        ANSWERS in turn, the last one repeating."""
        self._rules.append((match, list(answers) or [""]))
        return self

    def _answer(self, text: str) -> Reply:
        for match, answers in self._rules:
            hit = text.startswith(match) if isinstance(match, str) else match.search(text)
            if hit:
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                answer = answer(text) if callable(answer) else answer
                return Reply(answer) if isinstance(answer, str) else answer
        if link := LINK_NEW.search(text):
            temp, path = link.groups()
            content = self.files.pop(temp, b"")
            if path in self.files:
                return Reply("exists")
            self.files[path] = content
            return Reply("created")
        if self.strict:
            raise AssertionError(f"{self.name}: unexpected command {text!r}")
        return Reply()

    # -- what pyinfra's Host offers the code under test ------------------------------------
    def run_shell_command(self, command, **_kwargs) -> tuple[bool, CommandOutput]:
        text = command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)
        self.commands.append(text)
        reply = self._answer(text)
        lines = [OutputLine("stdout", line) for line in reply.stdout.splitlines()]
        lines += [OutputLine("stderr", line) for line in reply.stderr.splitlines()]
        return reply.ok, CommandOutput(lines)

    def put_file(self, fileobj, remote_filename: str, **_kwargs) -> bool:
        self.files[remote_filename] = fileobj.read()
        self.commands.append(f"<put {remote_filename}>")
        return True


class FakeSession:
    """What the runner needs of a pyinfra session: an inventory handing out a FakeHost per name
    (created on first use, kept: tests read what landed on it)."""

    def __init__(self) -> None:
        self.hosts: dict[str, FakeHost] = {}
        self.inventory = self

    def get_host(self, name: str) -> FakeHost:
        return self.hosts.setdefault(name, FakeHost(name))


def fake_sessions(monkeypatch) -> FakeSession:
    """Every `cerniq_ops.hosts.session(...)` of the test yields one shared FakeSession."""
    from contextlib import contextmanager

    from cerniq_ops import hosts

    state = FakeSession()

    @contextmanager
    def session(*_args, **_kwargs):
        yield state

    monkeypatch.setattr(hosts, "session", session)
    return state
