"""The pyinfra session every procedure uses: inventory from Settings, connect, run, disconnect.

Per-host values reach deploy functions through `host.data` (the inventory's host data plus
the environment's settings under `host.data.cerniq`); `add_op` would pass the same arguments
to every host, so procedures use `add_deploy` with a @deploy function instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all

from cerniq_ops.errors import StepFailed
from cerniq_ops.settings import HostSpec, Settings


def build_inventory(settings: Settings, hosts: list[HostSpec] | None = None) -> Inventory:
    """A pyinfra Inventory of HOSTS (default: all of the environment), grouped by role."""
    chosen = hosts if hosts is not None else list(settings.hosts)
    shared = {
        "ssh_user": settings.ssh_user,
        "ssh_port": settings.ssh_port,
        "cerniq": {k: v for k, v in dataclasses.asdict(settings).items() if k != "hosts"},
    }
    names = [(h.name, {**shared, **h.data, "roles": list(h.roles)}) for h in chosen]
    groups: dict[str, tuple[list[str], dict]] = {}
    for h in chosen:
        for role in h.roles:
            groups.setdefault(role, ([], {}))[0].append(h.name)
    return Inventory((names, {}), **groups)


@contextmanager
def session(settings: Settings, hosts: list[HostSpec] | None = None) -> Iterator[State]:
    """Connect to HOSTS; StepFailed naming every unreachable host; always disconnect."""
    state = State(build_inventory(settings, hosts), Config(CONNECT_TIMEOUT=10, FAIL_PERCENT=0))
    try:
        connect_all(state)
        down = sorted(
            h.name for h in state.inventory.iter_activated_hosts() if h in state.failed_hosts
        ) or sorted(h.name for h in state.failed_hosts)
        if down:
            raise StepFailed(
                f"cannot connect to {', '.join(down)} ({settings.env}); "
                f"check SSH with `invoke doctor --env {settings.env}`"
            )
        yield state
    finally:
        disconnect_all(state)
