"""Zero-downtime replacement of a compose service's replicas behind Traefik (measured recipe),
converging from whatever an earlier (killed or failed) run left behind.

Each pass lists EVERY container of the service by compose labels, in any state (`docker ps -a`),
and plans what to do (`plan`, pure):
1. containers that are not running (an old replica that exited after a killed drain, one
   created by a killed scale-up, a crash-looping broken one) serve nothing (Traefik routes only
   to running, healthy containers): remove them FIRST. Compose v1 counts a service's stopped
   containers in `--scale` and starts them again before creating new ones, so a leftover
   exited old replica would be revived and taken for a new one;
2. running replicas on the wanted image that are not unhealthy are kept (up to REPLICAS); the
   missing ones are started beside everything that runs (`up --no-recreate --scale
   S=running+missing`) and checked by count and image;
3. wait until Traefik's API shows every kept and new replica UP (a broken one never gets there:
   the new ones are removed and the old ones keep serving);
4. drain the rest (another image, unhealthy, beyond REPLICAS) only now: SIGTERM makes a replica
   fail its health check while it keeps serving; wait until Traefik no longer routes to it, let
   it exit, then `docker rm` it by ID.
Then list again: a pass that did not converge (say a replica exited meanwhile) is followed by
another, up to MAX_PASSES. Never `--scale` back down: compose would remove the NEW replicas
(highest numbers). Whatever was left by an earlier run and fixed here is reported through
REPAIRED ("removed 1 exited api replica on prod-app1 (v1.2.0)").
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyinfra.api.host import Host

from cerniq_ops import compose, hosts, traefik
from cerniq_ops.compose import Stack
from cerniq_ops.errors import StepFailed
from cerniq_ops.settings import Settings

MAX_PASSES = 3


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

    @property
    def unhealthy(self) -> bool:
        return "(unhealthy)" in self.status

    @property
    def version(self) -> str:
        return tag(self.image)


def tag(image: str) -> str:
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"


def parse_ps(output: str) -> list[Container]:
    containers = []
    for line in output.splitlines():
        parts = line.split(" ", 4)
        if len(parts) >= 4:
            containers.append(Container(*parts[:4], parts[4] if len(parts) > 4 else ""))
    return containers


def containers(
    host: Host, project: str, service: str | None = None, *, all_states: bool = False
) -> list[Container]:
    """PROJECT's (SERVICE's) containers on HOST by compose labels; ALL_STATES adds the stopped."""
    _, out, _ = hosts.sh(host, compose.list_containers(project, service, all_states))
    return parse_ps(out)


# -- the plan (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What one pass does to a service's containers (all states) to reach REPLICAS x IMAGE."""

    remove: tuple[Container, ...]  # not running: serve nothing; removed before any scale-up
    keep: tuple[Container, ...]  # running on the image, not unhealthy: kept (waited for UP)
    drain: tuple[Container, ...]  # running but stale: drained after the new ones are UP
    start: int  # new replicas to start

    @property
    def converged(self) -> bool:
        return not (self.remove or self.drain or self.start) and all(c.healthy for c in self.keep)


def plan(found: Sequence[Container], image: str, replicas: int) -> Plan:
    """Pure: the pass that takes FOUND (one service's containers, any state) to REPLICAS
    healthy containers of IMAGE, never touching a serving replica before its successor is UP."""
    running = [c for c in found if c.state == "running"]
    fit = [c for c in running if c.image == image and not c.unhealthy]
    fit.sort(key=lambda c: not c.healthy)  # healthy ones first (stable: listing order)
    keep = tuple(fit[:replicas])
    return Plan(
        remove=tuple(c for c in found if c.state != "running"),
        keep=keep,
        drain=tuple(c for c in running if c not in keep),
        start=replicas - len(keep),
    )


def converged(found: Sequence[Container], images: dict[str, str], replicas: dict[str, int]) -> bool:
    """Pure: every service of IMAGES has exactly its replicas, running, healthy, on its image,
    and nothing else (no exited container, none of another image) in FOUND (any state)."""
    return all(
        plan([c for c in found if c.service == svc], image, replicas.get(svc, 1)).converged
        for svc, image in images.items()
    )


def _count(containers: Sequence[Container], what: str, service: str) -> str:
    n = len(containers)
    return f"{n} {what} {service} replica{'s' if n != 1 else ''}"


def _versions(containers: Sequence[Container]) -> str:
    return ", ".join(sorted({c.version for c in containers}))


def removed_lines(service: str, host: str, dead: Sequence[Container]) -> list[str]:
    """One repair line per state of the removed containers."""
    lines = []
    for state in sorted({c.state for c in dead}):
        these = [c for c in dead if c.state == state]
        lines.append(f"removed {_count(these, state, service)} on {host} ({_versions(these)})")
    return lines


def drained_lines(service: str, host: str, p: Plan, image: str, first: bool = True) -> list[str]:
    """Repair lines for what a pass drains beyond an ordinary replace of the old version, and
    (on the FIRST pass) for replicas an earlier run started that this one keeps."""
    lines = []
    older = [c for c in (*p.drain, *p.remove) if c.image != image]
    if first and p.keep and older:  # replicas of the target beside older ones: a run died
        lines.append(
            f"kept {_count(p.keep, 'new', service)} on {host} ({tag(image)}) "
            "that an earlier run started"
        )
    extra = [c for c in p.drain if c.image == image and not c.unhealthy]
    sick = [c for c in p.drain if c.unhealthy]
    if extra:
        lines.append(f"drained {_count(extra, 'extra', service)} on {host} ({_versions(extra)})")
    if sick:
        lines.append(f"drained {_count(sick, 'unhealthy', service)} on {host} ({_versions(sick)})")
    return lines


def describe(found: Sequence[Container]) -> str:
    """`api 0f3a... v1.2.0 exited, ...` for messages."""
    return ", ".join(f"{c.service} {c.id[:12]} {c.version} {c.state}" for c in found) or "none"


def describe_host(found: Sequence[Container], services: Sequence[str]) -> str:
    """Pure: what a host's app containers run, every service: `v1.2.0` when every service
    runs just that, else `api v1.3.0, web v1.2.0, workers none (1 exited)`."""
    per: dict[str, str] = {}
    for svc in services:
        mine = [c for c in found if c.service == svc]
        up = sorted({c.version for c in mine if c.state == "running"})
        down = [c for c in mine if c.state != "running"]
        text = "+".join(up) or "none"
        if down:
            states = ", ".join(
                f"{sum(c.state == s for c in down)} {s}" for s in sorted({c.state for c in down})
            )
            text += f" ({states})"
        per[svc] = text
    values = set(per.values())
    if len(values) == 1 and "none" not in values and "(" not in next(iter(values)):
        return next(iter(values))
    return ", ".join(f"{svc} {text}" for svc, text in per.items())


def running_versions(found: Sequence[Container], services: Sequence[str]) -> dict[str, str]:
    """Pure: {service: version} of the services whose running containers all run one version."""
    out = {}
    for svc in services:
        versions = {c.version for c in found if c.service == svc and c.state == "running"}
        if len(versions) == 1:
            out[svc] = versions.pop()
    return out


# -- on a host ---------------------------------------------------------------------------------
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


_EDGE_RECREATES = threading.Lock()  # one host's Traefik recreated at a time in the process


def ensure_edge(host: Host, s: Settings, timeout: float = 60) -> str:
    """Traefik running and answering its API on HOST; returns what was done.

    A running Traefik whose image or static arguments differ from the settings' (the access
    log turned on, a new version) is recreated one host at a time, a planned rolling
    recreate, with the host out of the balancer meanwhile: `/health` answers 503 on it
    (compose.edge_drain_config) for edge_settle_seconds, so the balancer stops sending it
    requests, then Traefik is recreated; once it routes every service it routed before, the
    drain goes and, after edge_settle_seconds more (the balancer takes the host back), the
    next host may begin. A drain left by an interrupted run is removed here."""
    edge = compose.edge_stack(s)
    hosts.sh(host, compose.ensure_network(s))
    running = containers(host, edge.project, "traefik")
    if running and not edge_current(_inspect_edge(host, running[0]), s):
        with _EDGE_RECREATES:
            _recreate_edge(host, s, edge, timeout)
        return "traefik recreated: its configuration changed (one host at a time)"
    _edge_up(host, edge, timeout)
    drain = shlex.quote(compose.edge_drain_path(s))
    left = hosts.sh(host, f"if [ -e {drain} ]; then rm -f {drain}; echo removed; fi")[1]
    done = "traefik running" if running else "traefik started"
    return f"{done} (removed the drain of an interrupted recreate)" if left else done


def edge_drained(host: Host, s: Settings) -> bool:
    """HOST has an edge-drain.yml: its /health answers 503, the balancer keeps it out."""
    drain = shlex.quote(compose.edge_drain_path(s))
    return hosts.sh(host, f"if [ -e {drain} ]; then echo drained; fi")[1].strip() == "drained"


def put_back_drained(s: Settings, app_hosts: Sequence[Host]) -> list[str]:
    """The APP_HOSTS an interrupted Traefik recreate left out of the balancer, each put back
    by ensure_edge (recreated if still stale, its drain removed) before any other host may
    leave it: in parallel, a wave's other host could take the recreate lock first and leave
    no host in. What was done, a line per host put back."""
    return [f"{h.name}: {ensure_edge(h, s)}" for h in app_hosts if edge_drained(h, s)]


def _recreate_edge(host: Host, s: Settings, edge: Stack, timeout: float) -> None:
    routed = routed_services(traefik.api_get(host, "http/services"))
    hosts.write_file(host, compose.edge_drain_path(s), compose.edge_drain_config())
    traefik.wait_for(f"{host.name}'s /health to answer 503", lambda: _health(host, s) == "503", 30)
    time.sleep(s.edge_settle_seconds)  # the balancer's checks take the host out
    _edge_up(host, edge, timeout)
    traefik.wait_for(
        f"Traefik on {host.name} to route {', '.join(sorted(routed)) or 'its API'} again",
        lambda: routed <= routed_services(traefik.api_get(host, "http/services")),
        timeout,
    )
    hosts.sh(host, ["rm", "-f", compose.edge_drain_path(s)])
    if routed:
        traefik.wait_for(f"{host.name}'s /health", lambda: _health(host, s) == "200", timeout)
    time.sleep(s.edge_settle_seconds)  # the balancer's checks take the host back


def _health(host: Host, s: Settings) -> str:
    """The status code of /health through the host's own entrypoint ('000': no answer)."""
    url = f"http://127.0.0.1:{s.health_port}/health"
    command = ["curl", "-s", "-o", "/dev/null", "-m", "3", "-w", "%{http_code}", url]
    return hosts.sh(host, command, check=False, timeout=10)[1].strip() or "000"


def _edge_up(host: Host, edge: Stack, timeout: float) -> None:
    hosts.sh(host, edge.cmd("up", "-d", "--remove-orphans"))
    traefik.wait_for(f"Traefik's API on {host.name}", lambda: _answers(host), timeout)


def _inspect_edge(host: Host, container: Container) -> str:
    fmt = "{{.Config.Image}} {{json .Config.Cmd}}"
    return hosts.sh(host, ["docker", "inspect", "--format", fmt, container.id])[1]


def edge_current(inspected: str, s: Settings) -> bool:
    """Whether a Traefik container (`docker inspect`: image, then its arguments as JSON) runs
    the settings' image and static configuration."""
    image, _, cmd = inspected.strip().partition(" ")
    try:
        args = json.loads(cmd)
    except json.JSONDecodeError:
        return False
    return image == s.image("traefik", s.traefik_version) and args == compose.traefik_args(s)


def routed_services(docs: object) -> set[str]:
    """The services of Traefik's `http/services` document with a server UP."""
    return {d["name"] for d in docs or [] if isinstance(d, dict) and traefik.up_servers(d)}


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
    note: Callable[[str], None] = lambda _: None,
    repaired: Callable[[str], None] = lambda _: None,
) -> str:
    """Bring SERVICE on HOST to REPLICAS healthy containers of IMAGE with zero downtime, from
    any state (see the module's docstring); returns what was done."""
    version, replaced, started = tag(image), 0, 0
    for done in range(MAX_PASSES + 1):
        found = containers(host, stack.project, service, all_states=True)
        p = plan(found, image, replicas)
        if p.converged:
            if done == 0:
                return f"{service}: already {replicas} x {version}"
            return f"{service}: {replicas} x {version} (started {started}, replaced {replaced})"
        if done == MAX_PASSES:
            break
        started += _pass(host, stack, service, image, p, timeout, note, repaired, done == 0)
        replaced += len([c for c in p.drain if c.image != image])
    raise StepFailed(
        f"{service} on {host.name} did not converge to {replicas} x {version} in {MAX_PASSES} "
        f"passes; containers: {describe(found)}"
    )


def _pass(
    host: Host,
    stack: Stack,
    service: str,
    image: str,
    p: Plan,
    timeout: float,
    note: Callable[[str], None],
    repaired: Callable[[str], None],
    first: bool,
) -> int:
    """One pass of PLAN; the number of new replicas it started."""
    if p.remove:  # before any scale-up: compose would start them again
        hosts.sh(host, compose.remove_containers([c.id for c in p.remove]))
        for line in removed_lines(service, host.name, p.remove):
            repaired(line)
    new_ids = _start(host, stack, service, image, p, note) if p.start else []
    waiting = [c.id for c in p.keep] + new_ids
    routed = service in compose.ROUTED
    try:
        if routed:
            traefik.wait_for(
                f"{len(waiting)} new {service} replica(s) UP in Traefik on {host.name}",
                lambda: _all_up(host, service, waiting),
                timeout,
            )
        else:
            traefik.wait_for(
                f"{len(waiting)} new {service} replica(s) healthy on {host.name}",
                lambda: _all_healthy(host, stack.project, service, waiting),
                timeout,
            )
    except StepFailed:
        broken = new_ids + [c.id for c in p.keep if not c.healthy]
        if broken:
            hosts.sh(host, compose.remove_containers(broken), check=False)
        raise StepFailed(
            f"{service} {tag(image)} never became healthy on {host.name}; "
            f"removed the new replica(s), the old ones keep serving"
        ) from None
    if new_ids:
        note(f"{host.name}: {service} new replica(s) healthy: {' '.join(i[:12] for i in new_ids)}")
    for line in drained_lines(service, host.name, p, image, first):
        repaired(line)
    if p.drain:
        drain(host, service, [c.id for c in p.drain], routed, timeout)
        note(f"{host.name}: {service} old replica(s) drained and removed")
    return len(new_ids)


def _start(
    host: Host, stack: Stack, service: str, image: str, p: Plan, note: Callable[[str], None]
) -> list[str]:
    """Start P.start replicas beside the running ones; the IDs of the new ones on IMAGE.

    A new container of another image is removed; fewer new ones than asked (compose started a
    replica that exited after the listing instead) are left for the next pass to complete."""
    before = {c.id for c in (*p.keep, *p.drain)}
    hosts.sh(host, compose.scale_up(stack, service, len(before) + p.start))
    after = containers(host, stack.project, service, all_states=True)
    new = [c for c in after if c.id not in before]
    good = [c.id for c in new if c.image == image]
    wrong = [c for c in new if c.image != image]
    if wrong:
        hosts.sh(host, compose.remove_containers([c.id for c in wrong]), check=False)
    if len(good) != p.start or wrong:
        note(
            f"{host.name}: {service} scale-up started {len(new)} new replica(s) "
            f"({describe(new)}), expected {p.start} x {tag(image)}: the next pass completes it"
        )
    return good


def _all_healthy(host: Host, project: str, service: str, ids: list[str]) -> bool:
    listed = {c.id: c for c in containers(host, project, service)}
    return all(i in listed and listed[i].healthy for i in ids)


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
    hosts.sh(host, compose.remove_containers(ids))
