"""Zero-downtime replacement of a compose service's replicas behind Traefik (measured recipe).

1. start N new replicas beside the old ones (`up --no-recreate --scale S=old+N`);
2. wait until Traefik's API shows every new replica UP (a broken one never gets there: it is
   removed and the old ones keep serving);
3. drain each old replica: SIGTERM makes it fail its health check while it keeps serving; wait
   until Traefik no longer routes to it, let it exit, then `docker rm` it by ID.
Never `--scale` back down: compose would remove the NEW replicas (highest numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.host import Host

from cerniq_ops import compose, hosts, traefik
from cerniq_ops.compose import Stack
from cerniq_ops.errors import StepFailed
from cerniq_ops.settings import Settings


@dataclass(frozen=True)
class Container:
    id: str
    image: str
    service: str
    state: str
    status: str

    @property
    def healthy(self) -> bool:
        return self.state == "running" and "(healthy)" in self.status


def parse_ps(output: str) -> list[Container]:
    containers = []
    for line in output.splitlines():
        parts = line.split(" ", 4)
        if len(parts) >= 4:
            containers.append(Container(*parts[:4], parts[4] if len(parts) > 4 else ""))
    return containers


def containers(host: Host, project: str, service: str | None = None) -> list[Container]:
    _, out, _ = hosts.sh(host, compose.list_containers(project, service))
    return parse_ps(out)


def container_urls(host: Host, ids: list[str]) -> dict[str, str]:
    """{container id: Traefik server url} (http://<ip on the shared network>:80)."""
    if not ids:
        return {}
    _, out, _ = hosts.sh(host, compose.container_ips(ids))
    urls = {}
    for line in out.splitlines():
        cid, *ips = line.split()
        if ips:
            urls[cid[:12]] = f"http://{ips[0]}:80"
    return {i: urls[i[:12]] for i in ids if i[:12] in urls}


def ensure_edge(host: Host, s: Settings, timeout: float = 60) -> str:
    """Traefik running and answering its API on HOST; returns what was done."""
    edge = compose.edge_stack(s)
    hosts.sh(host, compose.ensure_network(s))
    running = containers(host, edge.project, "traefik")
    hosts.sh(host, edge.cmd("up", "-d", "--remove-orphans"))
    traefik.wait_for(
        f"Traefik's API on {host.name}",
        lambda: _answers(host),
        timeout,
    )
    return "traefik running" if running else "traefik started"


def _answers(host: Host) -> bool:
    try:
        return traefik.api_get(host, "overview") is not None
    except StepFailed:
        return False


def roll(
    host: Host,
    s: Settings,
    stack: Stack,
    service: str,
    image: str,
    replicas: int,
    timeout: float,
    note=lambda _: None,
) -> str:
    """Replace SERVICE's replicas on HOST with REPLICAS running IMAGE, with zero downtime."""
    old = containers(host, stack.project, service)
    if old and len(old) == replicas and all(c.image == image and c.healthy for c in old):
        return f"{service}: already {replicas} x {image.rsplit(':', 1)[1]}"
    old_ids = [c.id for c in old]
    hosts.sh(host, compose.scale_up(stack, service, len(old) + replicas))
    new = [c for c in containers(host, stack.project, service) if c.id not in old_ids]
    new_ids = [c.id for c in new]
    routed = service in compose.ROUTED
    try:
        if routed:
            traefik.wait_for(
                f"{len(new_ids)} new {service} replica(s) UP in Traefik on {host.name}",
                lambda: _all_up(host, service, new_ids),
                timeout,
            )
        else:
            traefik.wait_for(
                f"{len(new_ids)} new {service} replica(s) healthy on {host.name}",
                lambda: all(
                    c.healthy for c in containers(host, stack.project, service) if c.id in new_ids
                ),
                timeout,
            )
    except StepFailed:
        hosts.sh(host, ["docker", "rm", "-f", *new_ids], check=False)
        raise StepFailed(
            f"{service} {image.rsplit(':', 1)[1]} never became healthy on {host.name}; "
            f"removed the new replica(s), the old ones keep serving"
        ) from None
    note(f"{host.name}: {service} new replica(s) healthy: {' '.join(i[:12] for i in new_ids)}")
    if old_ids:
        drain(host, service, old_ids, routed, timeout)
        note(f"{host.name}: {service} old replica(s) drained and removed")
    return f"{service}: {len(new_ids)} x {image.rsplit(':', 1)[1]} (replaced {len(old_ids)})"


def _all_up(host: Host, service: str, ids: list[str]) -> bool:
    urls = container_urls(host, ids)
    if len(urls) != len(ids):
        return False
    doc = traefik.api_get(host, f"http/services/{service}@docker")
    return set(urls.values()) <= traefik.up_servers(doc)


def drain(host: Host, service: str, ids: list[str], routed: bool, timeout: float) -> None:
    """Take IDS out of rotation before they die, then remove them by ID."""
    urls = set(container_urls(host, ids).values())
    hosts.sh(host, ["docker", "kill", "--signal", "TERM", *ids], check=False)
    if routed and urls:
        traefik.wait_for(
            f"Traefik to stop routing to the old {service} replica(s) on {host.name}",
            lambda: (
                not (
                    urls
                    & traefik.up_servers(traefik.api_get(host, f"http/services/{service}@docker"))
                )
            ),
            timeout,
        )
    hosts.sh(host, ["docker", "wait", *ids], check=False, timeout=int(timeout) + 30)
    hosts.sh(host, ["docker", "rm", "-f", *ids])
