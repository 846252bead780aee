"""The rollout's decisions from every state an interrupted run leaves, on a fake host.

`Docker` answers the commands the rollout runs the way dockerd and compose v1 (1.29) do on the
testbed: `ps` by compose labels (`-a` adds the stopped), `up --no-recreate --scale S=N` counts a
service's containers in ANY state, starts its stopped ones first (that is how an exited old
replica got revived) and creates the missing ones from the compose file's image, with the next
container numbers; SIGTERM makes a replica fail its health check (Traefik marks it DOWN),
`docker wait` sees it exit. Every command is recorded, and the tests assert the exact lists.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from dataclasses import dataclass

import pytest
import yaml

from cerniq_ops import compose, deploy, rollout, settings
from cerniq_ops.errors import StepFailed
from cerniq_ops.rollout import Container
from tests.support.fakehost import FakeHost, Reply

pytestmark = pytest.mark.unit
REG = "registry.cerniq.app/cerniq"
V1, V2 = f"{REG}/api:v1.2.0", f"{REG}/api:v1.3.0"
STACK = compose.Stack(("docker", "compose"), "cerniq", "/opt/cerniq/docker-compose.yml")
PS_API = shlex.join(compose.list_containers("cerniq", "api", all_states=True))
READS = ("docker ps", "docker inspect", "curl ")


@dataclass
class Box:
    number: int
    image: str
    state: str = "running"
    health: str = "healthy"

    @property
    def id(self) -> str:
        return f"c{self.number}"

    def line(self, service: str) -> str:
        status = f"Up 5 seconds ({self.health})" if self.state == "running" else "Exited (0)"
        return f"{self.id} {self.image} {service} {self.state} {status}"


class Docker:
    """One service's containers on a fake host, driven by the commands the rollout sends."""

    def __init__(self, *boxes: Box, service: str = "api", image: str = V2, broken=False):
        self.boxes = list(boxes)
        self.service, self.image, self.broken = service, image, broken
        self.host = FakeHost("app1")
        self.host.on("docker ps", self.ps)
        self.host.on("docker rm -f ", self.rm)
        self.host.on("docker compose ", self.scale)
        self.host.on("docker inspect ", self.inspect)
        self.host.on("docker kill --signal TERM ", self.term)
        self.host.on("docker wait ", self.wait)
        self.host.on(re.compile(r"^curl .*/api/http/services/", re.S), self.traefik)

    def ids(self, cmd: str) -> list[str]:
        return [w for w in shlex.split(cmd) if re.fullmatch(r"c\d+", w)]

    def ps(self, cmd: str) -> str:
        shown = [b for b in self.boxes if " -a " in cmd or b.state == "running"]
        return "\n".join(b.line(self.service) for b in sorted(shown, key=lambda b: b.number))

    def rm(self, cmd: str) -> str:
        gone = set(self.ids(cmd))
        self.boxes = [b for b in self.boxes if b.id not in gone]
        return ""

    def scale(self, cmd: str) -> str:
        wanted = int(re.search(rf"--scale {self.service}=(\d+)", cmd).group(1))
        ordered = sorted(self.boxes, key=lambda b: b.number)
        for b in ordered[:wanted]:  # --no-recreate: existing ones are started as they are
            if b.state != "running":
                b.state, b.health = "running", "healthy"
        top = max((b.number for b in self.boxes), default=0)
        for n in range(wanted - len(ordered)):
            health = "health: starting" if self.broken else "healthy"
            self.boxes.append(Box(top + n + 1, self.image, health=health))
        return ""

    def inspect(self, cmd: str) -> str:
        return "\n".join(
            f"{b.id} 10.0.0.{b.number} "
            for b in self.boxes
            if b.id in self.ids(cmd) and b.state == "running"
        )

    def traefik(self, _cmd: str) -> Reply:
        status = {
            f"http://10.0.0.{b.number}:80": "UP" if b.health == "healthy" else "DOWN"
            for b in self.boxes
            if b.state == "running" and b.health != "health: starting"
        }
        return Reply(json.dumps({"serverStatus": status}) + "\n200")

    def term(self, cmd: str) -> str:
        for b in self.boxes:
            if b.id in self.ids(cmd):
                b.health = "unhealthy"
        return ""

    def wait(self, cmd: str) -> str:
        for b in self.boxes:
            if b.id in self.ids(cmd):
                b.state = "exited"
        return ""

    def changes(self) -> list[str]:
        """The commands that change something, in order (reads left out)."""
        return [c for c in self.host.commands if not c.startswith(READS)]

    def roll(self, replicas: int = 1, timeout: float = 5) -> tuple[str, list[str]]:
        repairs: list[str] = []
        s = settings.load("production", target="real")
        image = self.image if self.service == "api" else s.image(self.service, "v1.3.0")
        done = rollout.roll(
            self.host, s, STACK, self.service, image, replicas, timeout, repaired=repairs.append
        )
        return done, repairs

    def state(self) -> list[tuple[str, str, str, str]]:
        return [(b.id, b.image.rsplit("/", 1)[1], b.state, b.health) for b in self.boxes]


SCALE = "docker compose -p cerniq -f /opt/cerniq/docker-compose.yml up -d --no-deps --no-recreate"


def test_the_container_listing_sees_every_state_by_compose_labels():
    assert PS_API == (
        "docker ps -a --filter label=com.docker.compose.project=cerniq "
        "--filter label=com.docker.compose.service=api "
        '--format \'{{.ID}} {{.Image}} {{.Label "com.docker.compose.service"}} {{.State}} '
        "{{if .Status}}{{.Status}}{{end}}'"
    )


def test_an_ordinary_replace_drains_the_old_replica_only_after_the_new_one_is_up():
    docker = Docker(Box(1, V1))
    done, repairs = docker.roll()
    up = "curl -sS -m 3 -w '\n%{http_code}' http://127.0.0.1:64080/api/http/services/api@docker"
    assert docker.host.commands == [
        PS_API,
        f"{SCALE} --scale api=2 api",
        PS_API,
        "docker inspect --format '{{.Id}} {{range .NetworkSettings.Networks}}{{.IPAddress}} "
        "{{end}}' c2",
        up,  # the new replica is UP in Traefik ...
        "docker inspect --format '{{.Id}} {{range .NetworkSettings.Networks}}{{.IPAddress}} "
        "{{end}}' c1",
        "docker kill --signal TERM c1",  # ... before the old one is touched
        up,
        "docker wait c1",
        "docker rm -f c1",
        PS_API,
    ]
    assert done == "api: 1 x v1.3.0 (started 1, replaced 1)" and repairs == []
    assert docker.state() == [("c2", "api:v1.3.0", "running", "healthy")]


def test_an_exited_old_replica_left_by_a_killed_drain_is_removed_not_counted():
    docker = Docker(Box(1, V1, "exited"), Box(2, V2))
    done, repairs = docker.roll()
    assert docker.changes() == ["docker rm -f c1"]
    assert repairs == [
        "removed 1 exited api replica on app1 (v1.2.0)",
        "kept 1 new api replica on app1 (v1.3.0) that an earlier run started",
    ]
    assert docker.state() == [("c2", "api:v1.3.0", "running", "healthy")]
    assert done == "api: 1 x v1.3.0 (started 0, replaced 0)"


def test_an_exited_replica_is_removed_before_the_scale_up_so_compose_cannot_revive_it():
    docker = Docker(Box(1, V1, "exited"))
    _, repairs = docker.roll()
    assert docker.changes() == ["docker rm -f c1", f"{SCALE} --scale api=1 api"]
    assert repairs == ["removed 1 exited api replica on app1 (v1.2.0)"]
    assert docker.state() == [("c1", "api:v1.3.0", "running", "healthy")]  # compose reuses 1


def test_a_wrong_image_replica_still_serving_is_drained_after_the_kept_new_one():
    docker = Docker(Box(1, V1), Box(2, V2))
    _, repairs = docker.roll()
    assert docker.changes() == ["docker kill --signal TERM c1", "docker wait c1", "docker rm -f c1"]
    assert repairs == ["kept 1 new api replica on app1 (v1.3.0) that an earlier run started"]
    assert docker.state() == [("c2", "api:v1.3.0", "running", "healthy")]


def test_a_stale_extra_replica_of_the_right_image_is_drained():
    docker = Docker(Box(2, V2), Box(3, V2))
    _, repairs = docker.roll(replicas=1)
    assert docker.changes() == ["docker kill --signal TERM c3", "docker wait c3", "docker rm -f c3"]
    assert repairs == ["drained 1 extra api replica on app1 (v1.3.0)"]
    assert docker.state() == [("c2", "api:v1.3.0", "running", "healthy")]


def test_an_unhealthy_replica_of_the_right_image_is_replaced_not_kept():
    docker = Docker(Box(2, V2, health="unhealthy"))
    _, repairs = docker.roll()
    assert docker.changes() == [
        f"{SCALE} --scale api=2 api",
        "docker kill --signal TERM c2",
        "docker wait c2",
        "docker rm -f c2",
    ]
    assert repairs == ["drained 1 unhealthy api replica on app1 (v1.3.0)"]
    assert docker.state() == [("c3", "api:v1.3.0", "running", "healthy")]


def test_a_converged_service_is_left_alone():
    docker = Docker(Box(2, V2))
    assert docker.roll() == ("api: already 1 x v1.3.0", [])
    assert docker.host.commands == [PS_API]


def test_a_broken_new_replica_is_removed_and_the_old_one_keeps_serving():
    docker = Docker(Box(1, V1), broken=True)
    with pytest.raises(StepFailed, match="api v1.3.0 never became healthy on app1"):
        docker.roll(timeout=0.3)
    assert docker.changes() == [f"{SCALE} --scale api=2 api", "docker rm -f c2"]
    assert docker.state() == [("c1", "api:v1.2.0", "running", "healthy")]


def test_workers_are_replaced_by_docker_health_without_traefik():
    image = f"{REG}/workers:v1.3.0"
    docker = Docker(Box(1, f"{REG}/workers:v1.2.0"), service="workers", image=image)
    docker.roll()
    assert docker.changes() == [
        f"{SCALE} --scale workers=2 workers",
        "docker kill --signal TERM c1",
        "docker wait c1",
        "docker rm -f c1",
    ]
    assert not [c for c in docker.host.commands if c.startswith("curl ")]


# -- pure ---------------------------------------------------------------------------------------
def c(cid: str, image: str, state: str = "running", health: str = "healthy", svc: str = "api"):
    status = f"Up 1 minute ({health})" if state == "running" else "Exited (137) 1 minute ago"
    return Container(cid, image, svc, state, status)


def test_the_plan_removes_the_stopped_keeps_the_fit_and_drains_the_rest():
    found = [c("a", V1), c("b", V1, "exited"), c("d", V2, health="health: starting"), c("e", V2)]
    p = rollout.plan(found, V2, 2)
    assert [x.id for x in p.remove] == ["b"]
    assert [x.id for x in p.keep] == ["e", "d"]  # healthy first
    assert [x.id for x in p.drain] == ["a"] and p.start == 0 and not p.converged


def test_a_converged_check_counts_exited_and_wrong_image_containers():
    images = {"api": V2, "web": f"{REG}/web:v1.3.0"}
    good = [c("a", V2), c("w", f"{REG}/web:v1.3.0", svc="web")]
    assert rollout.converged(good, images, {"api": 1})
    assert not rollout.converged([*good, c("x", V1, "exited")], images, {"api": 1})
    assert not rollout.converged([*good, c("x", V2, "exited")], images, {"api": 1})
    assert not rollout.converged([c("a", V1), good[1]], images, {"api": 1})
    assert not rollout.converged([c("a", V2, health="health: starting"), good[1]], images, {})
    assert not rollout.converged(good, images, {"api": 2})
    assert not rollout.converged(good[:1], images, {"api": 1})


def test_a_host_report_names_every_service():
    services = ["api", "web", "workers"]
    same = [c("a", V2), c("w", f"{REG}/web:v1.3.0", svc="web")]
    same.append(c("k", f"{REG}/workers:v1.3.0", svc="workers"))
    assert rollout.describe_host(same, services) == "v1.3.0"
    mixed = [c("a", V2), c("o", V1, "exited"), *same[1:2], c("k", f"{REG}/workers:v1.2.0")]
    mixed[-1] = c("k", f"{REG}/workers:v1.2.0", svc="workers")
    assert rollout.describe_host(mixed, services) == (
        "api v1.3.0 (1 exited), web v1.3.0, workers v1.2.0"
    )
    assert rollout.describe_host([], services) == "api none, web none, workers none"
    assert rollout.running_versions(mixed, services) == {
        "api": "v1.3.0",
        "web": "v1.3.0",
        "workers": "v1.2.0",
    }


def test_files_can_say_what_a_mixed_host_runs_service_by_service():
    s = settings.load("production", target="real")
    docs = deploy.app_documents(s, "v1.2.0", "pw", {"api": "v1.3.0"})
    text = docs["docker-compose.yml"][0]
    assert f"image: {REG}/api:v1.3.0" in text and f"image: {REG}/web:v1.2.0" in text
    assert "CERNIQ_VERSION=v1.2.0" in docs[".env"][0]


def test_file_digests_compare_with_what_sha256sum_prints():
    docs = {"a.yml": ("x\n", "644"), ".env": ("y\n", "600")}
    want = deploy.digests(docs)
    out = "\n".join(f"{d}  /opt/cerniq/{p}" for p, d in sorted(want.items()))
    assert deploy.parse_digests(out, "/opt/cerniq/") == want
    assert compose.file_digests(["/opt/cerniq/.env"]) == ["sha256sum", "/opt/cerniq/.env"]


def test_a_failure_report_says_what_every_host_runs_for_every_service():
    from types import SimpleNamespace

    from cerniq_ops.procedure import Context

    s = settings.load("production", target="real")
    app1, app2 = FakeHost("app1.cerniq.app"), FakeHost("app2.cerniq.app")
    app1.on("docker ps -a ", Box(2, V2).line("api"))
    rows = [
        Box(1, V1, "exited").line("api"),
        Box(2, V2).line("api"),
        Box(3, f"{REG}/web:v1.2.0").line("web"),
        Box(4, f"{REG}/workers:v1.2.0").line("workers"),
    ]
    app2.on("docker ps -a ", "\n".join(rows))
    by_name = {"app1.cerniq.app": app1, "app2.cerniq.app": app2}
    state = SimpleNamespace(inventory=SimpleNamespace(get_host=by_name.__getitem__))
    ctx = Context(s, "deploy", state=state)
    assert deploy.host_versions(ctx) == (
        "hosts: app1.cerniq.app runs api v1.3.0, web none, workers none; "
        "app2.cerniq.app runs api v1.3.0 (1 exited), web v1.2.0, workers v1.2.0"
    )
    assert app2.commands == [
        "docker ps -a --filter label=com.docker.compose.project=cerniq --format "
        '\'{{.ID}} {{.Image}} {{.Label "com.docker.compose.service"}} {{.State}} '
        "{{if .Status}}{{.Status}}{{end}}'"
    ]


def test_a_traefik_is_current_when_its_image_and_arguments_are_the_settings():
    s = settings.load("production", target="real")
    image = s.image("traefik", s.traefik_version)
    args = compose.traefik_args(s)
    assert "--accesslog=true" in args
    assert rollout.edge_current(f"{image} {json.dumps(args)}\n", s)
    older = [a for a in args if a != "--accesslog=true"]
    assert not rollout.edge_current(f"{image} {json.dumps(older)}", s)
    assert not rollout.edge_current(f"{REG}/traefik:v3.0.0 {json.dumps(args)}", s)
    assert not rollout.edge_current("", s)
    quiet = dataclasses.replace(s, traefik_access_log=False)
    assert rollout.edge_current(f"{image} {json.dumps(older)}", quiet)


def test_routed_services_are_those_with_a_server_up():
    docs = [
        {"name": "api@docker", "serverStatus": {"http://a:80": "UP", "http://b:80": "DOWN"}},
        {"name": "web@docker", "serverStatus": {"http://c:80": "DOWN"}},
        {"name": "api@internal"},
    ]
    assert rollout.routed_services(docs) == {"api@docker"}
    assert rollout.routed_services(None) == set()


UP = json.dumps([{"name": "api@docker", "serverStatus": {"http://a:80": "UP"}}]) + "\n200"


def _edge_host(s, args: list[str], *services: str) -> FakeHost:
    """A host whose Traefik runs ARGS; its API's service list answers SERVICES in turn; its
    /health answers 503 (drained), then 200."""
    host = FakeHost("app1.cerniq.app")
    image = s.image("traefik", s.traefik_version)
    host.on("docker ps ", f"t1 {image} traefik running Up 2 hours")
    host.on("docker inspect ", f"{image} {json.dumps(args)}")
    host.on(re.compile(r"/api/http/services$"), *(services or (UP,)))
    host.on(re.compile(r"/api/overview$"), "{}\n200")
    host.on(re.compile(r"127\.0\.0\.1:64000/health$"), "503", "200")
    return host


def test_a_traefik_whose_configuration_changed_is_recreated_with_its_host_drained():
    s = dataclasses.replace(settings.load("production", target="real"), edge_settle_seconds=0)
    old = [a for a in compose.traefik_args(s) if a != "--accesslog=true"]
    host = _edge_host(s, old, UP, "[]\n200", UP)  # routed api; just recreated: nothing yet
    assert rollout.ensure_edge(host, s, timeout=5) == (
        "traefik recreated: its configuration changed (one host at a time)"
    )
    drain = compose.edge_drain_path(s)
    assert host.files["/opt/cerniq/traefik/dynamic/.edge-drain.yml.tmp-cerniq"] == (
        compose.edge_drain_config().encode()
    )
    at = list(enumerate(host.commands))
    written = next(i for i, c in at if c.startswith("chmod ") and drain in c)
    checked = [i for i, c in at if c.endswith("127.0.0.1:64000/health")]
    up = next(i for i, c in at if " up -d " in c)
    listed = [i for i, c in at if c.endswith("/api/http/services")]
    removed = host.commands.index(f"rm -f {drain}")
    # routes read, drained (503 seen), recreated, routes back, drain gone, /health 200 again
    assert listed[0] < written < checked[0] < up < listed[1] < listed[2] < removed < checked[-1]
    assert len(listed) == 3 and len(checked) == 2, host.commands


def test_a_current_traefik_is_only_brought_up_and_a_left_drain_removed():
    s = settings.load("production", target="real")
    host = _edge_host(s, compose.traefik_args(s))
    assert rollout.ensure_edge(host, s, timeout=5) == "traefik running"
    assert any(" up -d " in c for c in host.commands)
    assert not any(c.endswith("/api/http/services") for c in host.commands)
    host.on("if [ -e ", "removed")
    assert rollout.ensure_edge(host, s, timeout=5) == (
        "traefik running (removed the drain of an interrupted recreate)"
    )


def test_hosts_a_killed_recreate_left_drained_are_put_back_before_any_other():
    s = dataclasses.replace(settings.load("production", target="real"), edge_settle_seconds=0)
    old = [a for a in compose.traefik_args(s) if a != "--accesslog=true"]
    drained = _edge_host(s, old, UP, "[]\n200", UP).on(re.compile("echo drained"), "drained")
    stale = _edge_host(s, old)  # not drained: its turn comes in its wave
    stale.name = "app2.cerniq.app"
    assert rollout.put_back_drained(s, [drained, stale]) == [
        "app1.cerniq.app: traefik recreated: its configuration changed (one host at a time)"
    ]
    assert any(" up -d " in c for c in drained.commands)
    assert not any(" up -d " in c for c in stale.commands)  # only asked whether it is drained
    assert len(stale.commands) == 1 and "echo drained" in stale.commands[0]


def test_the_edge_drain_answers_503_on_health_only():
    doc = yaml.safe_load(compose.edge_drain_config())
    assert doc == {
        "http": {
            "routers": {
                "cerniq-edge-drain": {
                    "rule": "Path(`/health`)",
                    "entryPoints": ["web"],
                    "priority": 1000000,
                    "service": "cerniq-edge-drain",
                }
            },
            "services": {"cerniq-edge-drain": {"loadBalancer": {"servers": []}}},
        }
    }
