"""The two colors, blue and green, as each app host runs them: a compose project, file, env
file and port per color, its services' aliases on the shared network and its Traefik services
(pure builders); and the app hosts of a run, each with its connection.
"""

from __future__ import annotations

from cerniq_ops import compose
from cerniq_ops.compose import Stack
from cerniq_ops.procedure import Context
from cerniq_ops.settings import HostSpec, Settings

COLORS = ("blue", "green")
ROUTED_SERVICES = ("api", "web")  # reached through Traefik; the rest (workers) just run


# -- pure builders: colors -----------------------------------------------------------------------
def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


def color_port(s: Settings, color: str) -> int:
    return s.blue_port if color == "blue" else s.green_port


def color_project(s: Settings, color: str) -> str:
    return f"{s.compose_project}-{color}"


def color_file(color: str) -> str:
    return f"docker-compose.{color}.yml"


def color_stack(s: Settings, color: str) -> Stack:
    return Stack(
        tuple(s.compose_command), color_project(s, color), f"{s.app_root}/{color_file(color)}"
    )


def alias(service: str, color: str) -> str:
    """The color's name for SERVICE on the shared network: what Traefik's servers point at."""
    return f"{service}-{color}"


def traefik_service(color: str, service: str = "api") -> str:
    return f"cerniq-{color}" if service == "api" else f"cerniq-{service}-{color}"


def routed_name(color: str, service: str = "api") -> str:
    """The service the public router names when COLOR is active: COLOR, failing over to the
    other color only while COLOR has no healthy server."""
    return f"{traefik_service(color, service)}-first"


def color_compose(s: Settings, color: str, version: str) -> str:
    """The whole app at VERSION as COLOR: no Traefik labels (the file provider routes it), the
    api published on the color's port, routed services aliased `<service>-<color>`."""
    services = {}
    for svc in s.services:
        spec = compose.app_service(s, svc, version, env_file=f".env.{color}", labelled=False)
        if svc in ROUTED_SERVICES:
            spec["networks"] = {"default": {"aliases": [alias(svc, color)]}}
        if svc == "api":
            spec["ports"] = [f"{color_port(s, color)}:80"]
        services[svc] = spec
    doc = {
        "version": "3.7",
        "services": services,
        "networks": {"default": {"external": True, "name": compose.network_name(s)}},
    }
    return compose.dump(doc)


def color_documents(
    s: Settings, color: str, version: str, db_password: str | None
) -> dict[str, tuple[str, str]]:
    return {
        color_file(color): (color_compose(s, color, version), "644"),
        f".env.{color}": (compose.env_file(s, version, db_password), "600"),
    }


def color_url(s: Settings, spec: HostSpec, color: str) -> str:
    """The color's api on HOST, straight (the seed's `curl localhost:6400x/health`)."""
    return f"http://{spec.address}:{color_port(s, color)}"


# -- the app hosts, each running both colors ------------------------------------------------------
def _pairs(ctx: Context):
    return list(zip(ctx.settings.app_hosts, ctx.app_hosts, strict=True))
