"""What runs where: connect to every host of an environment and report roles and services."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.facts.server import Command, Hostname

from cerniq_ops import hosts
from cerniq_ops.output import table
from cerniq_ops.settings import Settings

# One probe per host: daemons by process name, then the images of running containers.
PROBE = (
    "for p in sshd dockerd postgres docker-registry traefik; do"
    " pidof -s $p >/dev/null && echo daemon:$p; done;"
    " command -v docker >/dev/null && docker ps --format 'container:{{.Image}}' 2>/dev/null;"
    " true"
)


@dataclass(frozen=True)
class HostReport:
    env: str
    name: str
    address: str
    roles: tuple[str, ...]
    hostname: str
    daemons: tuple[str, ...]
    containers: tuple[str, ...]


def parse_probe(output: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    lines = [line.strip() for line in output.splitlines()]
    daemons = tuple(line.removeprefix("daemon:") for line in lines if line.startswith("daemon:"))
    containers = tuple(
        sorted(line.removeprefix("container:") for line in lines if line.startswith("container:"))
    )
    return daemons, containers


def survey(settings: Settings) -> list[HostReport]:
    reports = []
    with hosts.session(settings) as state:
        for spec in settings.hosts:
            host = state.inventory.get_host(spec.name)
            daemons, containers = parse_probe(host.get_fact(Command, PROBE) or "")
            reports.append(
                HostReport(
                    settings.env,
                    spec.name,
                    spec.address,
                    spec.roles,
                    host.get_fact(Hostname),
                    daemons,
                    containers,
                )
            )
    return reports


def render(reports: list[HostReport]) -> str:
    rows = [
        (
            r.env,
            r.name,
            r.address,
            ",".join(r.roles),
            r.hostname,
            " ".join(r.daemons) or "-",
            " ".join(r.containers) or "-",
        )
        for r in reports
    ]
    return table(("env", "host", "address", "roles", "hostname", "daemons", "containers"), rows)
