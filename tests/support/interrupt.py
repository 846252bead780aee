"""Kill a command as a dropped CI runner or a closed laptop would: SIGKILL of its whole process
group, right after (or DELAY seconds after) it printed a line matching a pattern, or once a
condition on the hosts holds after that line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.cli import INVOKE, PROJECT


@dataclass(frozen=True)
class Killed:
    output: str  # what it printed up to the kill
    seen: bool  # the line came
    ended: bool  # it ended by itself before the kill


def kill_after(
    args: tuple[str, ...],
    pattern: str,
    delay: float = 0.0,
    timeout: float = 600,
    until: Callable[[], bool] | None = None,
) -> Killed:
    """Start `invoke ARGS` in a session of its own; DELAY seconds after a line of its output
    (stdout and stderr) matches PATTERN (and then once UNTIL() holds, polled), SIGKILL its
    process group."""
    proc = subprocess.Popen(
        [INVOKE, *args],
        cwd=PROJECT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not seen.wait(0.05) and proc.poll() is None and time.monotonic() < deadline:
        pass
    if seen.is_set() and delay:
        time.sleep(delay)  # the kill moment itself, inside the window after the line
    while seen.is_set() and until and proc.poll() is None and time.monotonic() < deadline:
        if until():
            break
    ended = proc.poll() is not None
    if not ended:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    return Killed("".join(lines), seen.is_set(), ended)
