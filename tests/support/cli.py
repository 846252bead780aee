"""Run `invoke` as a user would: a subprocess in the project folder, stdin not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")


def invoke(
    *args: str, env: dict | None = None, drop: tuple[str, ...] = (), timeout: int = 600
) -> subprocess.CompletedProcess:
    environ = {**os.environ, **(env or {})}
    for name in drop:
        environ.pop(name, None)
    return subprocess.run(
        [INVOKE, *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        stdin=subprocess.DEVNULL,
    )
