"""Signals as exceptions: SIGTERM (a cancelled CI job, `kill`) stops a run like Ctrl-C does, so
the runner's failure path (hooks, audit, lock release) runs; while that path runs, further
SIGINT/SIGTERM are held off, so a second Ctrl-C cannot leave a half-switched environment."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM (a BaseException, like
    KeyboardInterrupt, so `except Exception` in a step cannot swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")


def _through_greenlets() -> None:
    """pyinfra runs host commands in gevent greenlets, and gevent prints and drops what a
    greenlet raises unless its hub counts it a system error: then it is thrown into the main
    greenlet, where the runner's failure path catches it. Terminated is one (as Ctrl-C is),
    and neither is printed as a traceback: the runner says it in one line."""
    from gevent.hub import Hub

    if Terminated not in Hub.SYSTEM_ERROR:
        Hub.SYSTEM_ERROR = (*Hub.SYSTEM_ERROR, Terminated)
        Hub.NOT_ERROR = (*Hub.NOT_ERROR, Terminated, KeyboardInterrupt)


_through_greenlets()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread."""
    if not _main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def held_off(progress: Callable[[str], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are noted and ignored (safety hooks are running)."""
    if not _main_thread():
        yield
        return

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        progress(f"      {name} ignored: the safety hooks are running; they end by themselves")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
