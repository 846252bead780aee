"""The environment's deploy lock held around a change made outside a procedure run:
`db.migrate` and `db.rollback` change the schema a deploy relies on, so they never run beside a
deploy, a restore or another schema change of the same environment. The lock handling is the
runner's (`procedure.locked`): heartbeat, run journal, release whatever ends the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cerniq_ops import hosts
from cerniq_ops.output import say
from cerniq_ops.settings import Settings


@contextmanager
def held(
    s: Settings, procedure: str, message: str = "", wait: float = 0
) -> Iterator[object | None]:
    """Take S's deploy lock on its primary app host for the block (LockHeld, exit 3, when
    another run holds it; WAIT seconds to wait for it); released when the block ends, failed or
    not. An environment with no app host (a database alone) has no lock to take: None."""
    if not s.app_hosts:
        yield None
        return
    from cerniq_ops.procedure import Context, locked

    with hosts.session(s, [s.primary_host]) as state:
        ctx = Context(s, procedure, message=message, state=state, lock_wait=wait, progress=say)
        with locked(ctx):
            yield ctx.held_lock
