"""What a role reads of the host it runs on: the environment's settings.

Under cerniq-ops (cerniq_ops.hosts) the settings ride along as `host.data.cerniq`; under the
plain pyinfra CLI (`pyinfra inventories/staging.py deploys/server.py`) they are loaded here
for the inventory's environment (the inventory file's name is a pyinfra group), so both see
the same values, testbed overrides included.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

from pyinfra import host
from pyinfra.api.operation import OperationMeta

ENVIRONMENTS = ("staging", "production")


def setting(name: str) -> Any:
    values = host.data.get("cerniq")
    if values is None:
        values = _cli_settings(environment())
    return values[name]


def environment() -> str:
    """The host's environment: its settings', else the inventory group it is in."""
    values = host.data.get("cerniq")
    if values is not None:
        return str(values["env"])
    found = [g for g in ENVIRONMENTS if g in host.groups]
    if len(found) != 1:
        raise ValueError(f"{host.name}: in no environment's inventory ({', '.join(ENVIRONMENTS)})")
    return found[0]


@cache
def _cli_settings(env: str) -> dict[str, Any]:
    from cerniq_ops import settings

    return {k: v for k, v in dataclasses.asdict(settings.load(env)).items() if k != "hosts"}


def changed(op: OperationMeta) -> bool:
    """Whether OP changed the host: for `_if` conditions that also hold when a dry run plans
    (before execution: whether it will change), so plans list only what a run would do."""
    return op.did_change() if op.is_complete() else op.will_change
