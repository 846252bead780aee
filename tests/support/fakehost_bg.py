"""A fake pyinfra host for unit tests of procedure logic: it records every command, keeps the
files written through `cerniq_ops.hosts` (write_file, read_file, rm -f) in a dict, and answers
other commands from scripted responders. Nothing connects anywhere.

    host = FakeHost("app1")
    host.answer(r"curl .*/api/overview", '{}\\n200')          # text: stdout, exit 0
    host.answer(r"docker ps", lambda cmd, h: (True, ""))       # or a function -> (ok, stdout)
    host.fail(r"mv -f .*active.yml", "disk full")              # exit 1 with that stderr
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

Answer = str | Callable[[str, "FakeHost"], tuple[bool, str]]


@dataclass
class _Output:
    stdout_lines: list[str]
    stderr_lines: list[str] = field(default_factory=list)


class FakeHost:
    def __init__(self, name: str):
        self.name = name
        self.files: dict[str, str] = {}
        self.commands: list[str] = []
        self._answers: list[tuple[re.Pattern, Answer, str | None]] = []

    # -- scripting ---------------------------------------------------------------------------
    def answer(self, pattern: str, answer: Answer) -> None:
        """Commands matching PATTERN (re.search) get ANSWER; the newest matching rule wins."""
        self._answers.insert(0, (re.compile(pattern, re.S), answer, None))

    def fail(self, pattern: str, stderr: str = "failed") -> None:
        self._answers.insert(0, (re.compile(pattern, re.S), "", stderr))

    def ran(self, pattern: str) -> list[str]:
        return [c for c in self.commands if re.search(pattern, c)]

    # -- what cerniq_ops.hosts calls -----------------------------------------------------------
    def put_file(self, fileobj, path: str, **_kwargs) -> bool:
        self.commands.append(f"put {path}")
        for rx, _, stderr in self._answers:
            if stderr is not None and rx.search(f"put {path}"):
                return False
        self.files[path] = fileobj.read().decode()
        return True

    def run_shell_command(self, command, **_kwargs):
        text = str(command.bits[0]) if hasattr(command, "bits") else str(command)
        self.commands.append(text)
        for rx, answer, stderr in self._answers:
            if rx.search(text):
                if stderr is not None:
                    return False, _Output([], [stderr])
                ok, out = answer(text, self) if callable(answer) else (True, answer)
                return ok, _Output(out.splitlines())
        return True, _Output(self._files_command(text).splitlines())

    # -- the shell lines of cerniq_ops.hosts, on self.files --------------------------------------
    def _files_command(self, text: str) -> str:
        read = re.fullmatch(r"if \[ -e (\S+) \]; then echo \+; cat \S+; else echo -; fi", text)
        if read:
            path = shlex.split(read.group(1))[0]
            return f"+\n{self.files[path]}" if path in self.files else "-"
        move = re.fullmatch(r"chmod \S+ (\S+) && mv -f (\S+) (\S+)", text)
        if move:
            temp, target = shlex.split(move.group(2))[0], shlex.split(move.group(3))[0]
            self.files[target] = self.files.pop(temp)
            return ""
        words = shlex.split(text) if not any(ch in text for ch in ";|&") else []
        if words[:2] == ["rm", "-f"]:
            for path in words[2:]:
                self.files.pop(path, None)
        return ""


class FakeInventory:
    def __init__(self, hosts: dict[str, FakeHost]):
        self.hosts = hosts

    def get_host(self, name: str) -> FakeHost:
        return self.hosts[name]


class FakeState:
    """What Context.state is for the steps: an inventory of fake hosts."""

    def __init__(self, names: list[str]):
        self.inventory = FakeInventory({n: FakeHost(n) for n in names})
