"""A color's containers on an app host, in every state: which to remove before `up`, whether
the color runs what it should, and the version it runs.
"""

from __future__ import annotations

from cerniq_ops import compose, hosts, rollout
from cerniq_ops.bluegreen.colors import color_project, color_url
from cerniq_ops.clients.http import Health, health
from cerniq_ops.rollout import Container
from cerniq_ops.settings import HostSpec, Settings


# -- pure: a color's containers, every state -------------------------------------------------
def stale_containers(found: list[Container]) -> list[Container]:
    """Containers `compose up` would start again as they are (exited, created, dead...): never
    revive one; they are removed and compose creates fresh ones."""
    return [c for c in found if c.state != "running"]


def color_problems(found: list[Container], s: Settings, color: str, version: str) -> list[str]:
    """A color runs exactly one running container of each service, on VERSION's image."""
    problems = []
    for svc in s.services:
        mine = [c for c in found if c.service == svc]
        good = [c for c in mine if c.state == "running" and c.image == s.image(svc, version)]
        if len(good) != 1 or len(mine) != 1:
            seen = ", ".join(f"{c.id[:12]} {c.image.rsplit(':', 1)[-1]} {c.state}" for c in mine)
            problems.append(f"{color} {svc}: {seen or 'no container'} (want 1 x {version})")
    return problems


def surplus_containers(found: list[Container], s: Settings, version: str) -> list[Container]:
    """Beside a running container of a service on VERSION's image: its other containers."""
    extra = []
    for svc in s.services:
        mine = [c for c in found if c.service == svc]
        good = [c for c in mine if c.state == "running" and c.image == s.image(svc, version)]
        if good:
            extra += [c for c in mine if c is not good[0]]
    return extra


def describe_containers(found: list[Container]) -> str:
    return ", ".join(
        f"{c.service} {c.id[:12]} ({c.image.rsplit(':', 1)[-1]}, {c.state})" for c in found
    )


# -- reading hosts --------------------------------------------------------------------------------
def color_version(s: Settings, host, spec: HostSpec, color: str) -> tuple[str | None, Health]:
    """(version the color runs, its health on the color's port)."""
    h = health(color_url(s, spec, color))
    if h.version:
        return h.version, h
    api = rollout.containers(host, color_project(s, color), "api")
    tags = sorted({c.image.rsplit(":", 1)[1] for c in api})
    return ("+".join(tags) or None), h


def color_containers(host, s: Settings, color: str) -> list[Container]:
    """The color's containers by compose labels, in every state (`docker ps -a`)."""
    _, out, _ = hosts.sh(host, compose.list_containers(color_project(s, color), all_states=True))
    return rollout.parse_ps(out)
