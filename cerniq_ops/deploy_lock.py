"""The environment's deploy lock (lock.py, the runner's) held around a change made outside a
procedure run: `db.migrate` and `db.rollback` change the schema a deploy relies on, so they
never run beside a deploy, a restore or another schema change of the same environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cerniq_ops import hosts, lock
from cerniq_ops.settings import Settings


@contextmanager
def held(s: Settings, procedure: str, message: str = "") -> Iterator[lock.LockRecord | None]:
    """Take S's deploy lock on its primary app host for the block (LockHeld, exit 3, when
    another run holds it); released when the block ends, failed or not. An environment with
    no app host (a database alone) has no lock to take: None."""
    if not s.app_hosts:
        yield None
        return
    with hosts.session(s, [s.primary_host]) as state:
        host = state.inventory.get_host(s.primary_host.name)
        record = lock.new_record(procedure, None, message)
        lock.acquire(host, s, record)
        try:
            yield record
        finally:
            lock.release(host, s, record)
