"""Pure builders for what runs on an app host: compose documents, the env file, command lines.

Layout under `app_root` (/opt/cerniq), as in the seed:
  docker-compose.traefik.yml   Traefik (project <compose_project>-edge), shared by every rollout
  docker-compose.yml           the app for rolling deploys (project <compose_project>)
  docker-compose.blue.yml / docker-compose.green.yml   the blue-green colors
  .env                         runtime environment of the app (mode 600: it holds secrets)
  traefik/dynamic/             Traefik's file provider directory
All projects share one external docker network, so Traefik reaches every replica.
Containers are selected by compose labels, never by their names (v1 and v2 name them apart).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from cerniq_ops.settings import Settings

TRAEFIK_API_PORT = 64080  # Traefik's API/dashboard, published on the host's loopback only
ROUTED = {"api": "PathPrefix(`/`)", "web": "PathPrefix(`/web`)"}  # service -> router rule


@dataclass(frozen=True)
class Stack:
    """One compose project on a host: how to address it with the compose CLI."""

    compose: tuple[str, ...]
    project: str
    file: str

    def cmd(self, *args: str) -> list[str]:
        return [*self.compose, "-p", self.project, "-f", self.file, *args]


def network_name(s: Settings) -> str:
    return s.compose_project


def app_stack(s: Settings) -> Stack:
    return Stack(tuple(s.compose_command), s.compose_project, f"{s.app_root}/docker-compose.yml")


def edge_stack(s: Settings) -> Stack:
    return Stack(
        tuple(s.compose_command),
        f"{s.compose_project}-edge",
        f"{s.app_root}/docker-compose.traefik.yml",
    )


def traefik_args(s: Settings) -> list[str]:
    """Traefik's static configuration: file provider on a directory, docker provider by label,
    the access log (common log format) on its stdout with the setting traefik_access_log."""
    return [
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        f"--entrypoints.web.address=:{s.health_port}",
        "--api.insecure=true",
        "--ping=true",
        "--metrics.prometheus=true",
        "--metrics.prometheus.addServicesLabels=true",
        "--metrics.prometheus.addRoutersLabels=true",
        "--providers.docker=true",
        "--providers.docker.exposedByDefault=false",
        f"--providers.docker.network={network_name(s)}",
        "--providers.file.directory=/etc/traefik/dynamic",
        "--providers.file.watch=true",
        "--providers.providersThrottleDuration=0s",
        "--log.level=ERROR",
        *(["--accesslog=true"] if s.traefik_access_log else []),
    ]


EDGE_DRAIN = "cerniq-edge-drain"  # a router and a service without servers: Traefik answers 503


def edge_drain_path(s: Settings) -> str:
    return f"{s.app_root}/traefik/dynamic/edge-drain.yml"


def edge_drain_config() -> str:
    """`edge-drain.yml`: `/health` answers 503 on this host while every other route keeps
    serving, so the balancer in front (which checks /health) takes the host out before its
    Traefik is recreated, and keeps it out until the file goes."""
    doc = {
        "http": {
            "routers": {
                EDGE_DRAIN: {
                    "rule": "Path(`/health`)",
                    "entryPoints": ["web"],
                    "priority": 1_000_000,  # above maintenance's 100_000: /health stays 503
                    "service": EDGE_DRAIN,
                }
            },
            "services": {EDGE_DRAIN: {"loadBalancer": {"servers": []}}},
        }
    }
    return _dump(doc)


def _external_network(s: Settings) -> dict:
    return {"default": {"external": True, "name": network_name(s)}}


def edge_compose(s: Settings) -> str:
    doc = {
        "version": "3.7",
        "services": {
            "traefik": {
                "image": s.image("traefik", s.traefik_version),
                "command": traefik_args(s),
                "ports": [
                    f"{s.health_port}:{s.health_port}",
                    f"127.0.0.1:{TRAEFIK_API_PORT}:8080",
                ],
                "volumes": [
                    "/run/docker.sock:/var/run/docker.sock:ro",
                    f"{s.app_root}/traefik/dynamic:/etc/traefik/dynamic:ro",
                ],
                "restart": "unless-stopped",
            }
        },
        "networks": _external_network(s),
    }
    return _dump(doc)


def service_labels(service: str) -> list[str]:
    """Traefik labels of a routed service: identical for every replica of every version.

    (Old and new replicas with different labels would make Traefik drop the router.)
    """
    rule = ROUTED[service]
    labels = [
        "traefik.enable=true",
        f"traefik.http.routers.{service}.rule={rule}",
        f"traefik.http.routers.{service}.entrypoints=web",
        f"traefik.http.routers.{service}.service={service}",
        f"traefik.http.services.{service}.loadbalancer.server.port=80",
        f"traefik.http.services.{service}.loadbalancer.healthcheck.path=/health",
        f"traefik.http.services.{service}.loadbalancer.healthcheck.interval=1s",
        f"traefik.http.services.{service}.loadbalancer.healthcheck.timeout=3s",
    ]
    if service != "api":
        prefix = rule.split("`")[1]
        labels += [
            f"traefik.http.routers.{service}.middlewares={service}-strip",
            f"traefik.http.middlewares.{service}-strip.stripprefix.prefixes={prefix}",
        ]
    return labels


def _service(s: Settings, service: str, version: str) -> dict:
    spec: dict = {
        "image": s.image(service, version),
        "env_file": [".env"],
        "restart": "unless-stopped",
        "stop_grace_period": "15s",
        # Docker's verdict gates Traefik's docker provider: an unhealthy container is dropped
        # from the pool, so be tolerant of a slow check on a busy host (3 misses, 3 s each).
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"],
            "interval": "1s",
            "timeout": "3s",
            "retries": 3,
        },
    }
    if service in ROUTED:
        spec["labels"] = service_labels(service)
    return spec


def app_compose(s: Settings, version: str, versions: Mapping[str, str] | None = None) -> str:
    """The app for rolling deploys: every service at VERSION (or at VERSIONS[service], for a
    host left with services on different versions), routed ones labelled for Traefik."""
    chosen = versions or {}
    doc = {
        "version": "3.7",
        "services": {svc: _service(s, svc, chosen.get(svc, version)) for svc in s.services},
        "networks": _external_network(s),
    }
    return _dump(doc)


def env_file(
    s: Settings, version: str, db_password: str | None, redis_password: str | None = None
) -> str:
    """The app's runtime environment. Holds the DB and Redis passwords: written mode 600,
    never printed. Every URL part is percent-encoded (a password may hold `@`, `#`, `/`, `:`).
    Without REDIS_PASSWORD the one named by the setting redis_password_env is used, if set.
    """
    db = s.db_conninfo()
    if redis_password is None:
        redis_password = s.secret("redis_password_env")
    redis_host, redis_port = s.redis_address()
    lines = [
        f"CERNIQ_ENV={s.env}",
        f"CERNIQ_VERSION={version}",
        "DATABASE_URL="
        + database_url(db["user"], db_password or "", db["host"], db["port"], db["dbname"]),
        "REDIS_URL=" + redis_url(redis_password or "", redis_host, redis_port),
    ]
    return "\n".join(lines) + "\n"


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address


def database_url(user: str, password: str, host: str, port: int, dbname: str) -> str:
    """postgresql://user:password@host:port/dbname, each part percent-encoded."""
    auth = _q(user) + (f":{_q(password)}" if password else "")
    return f"postgresql://{auth}@{_host(host)}:{port}/{_q(dbname)}"


def redis_url(password: str, host: str, port: int, db: int = 0) -> str:
    """redis://:password@host:port/db (no user: Redis' default user), password encoded."""
    auth = f":{_q(password)}@" if password else ""
    return f"redis://{auth}{_host(host)}:{port}/{db}"


def _dump(doc: dict) -> str:
    return "# Written by cerniq-ops; changes here are overwritten.\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False, width=200
    )


# -- command lines ---------------------------------------------------------------------------
def label_filter(project: str, service: str | None = None) -> list[str]:
    args = ["--filter", f"label=com.docker.compose.project={project}"]
    if service:
        args += ["--filter", f"label=com.docker.compose.service={service}"]
    return args


def list_containers(
    project: str, service: str | None = None, all_states: bool = False
) -> list[str]:
    """`docker ps` printing `id image service state health` per container of PROJECT/SERVICE;
    with ALL_STATES (`-a`) also the exited, created, restarting and dead ones."""
    fmt = (
        '{{.ID}} {{.Image}} {{.Label "com.docker.compose.service"}} {{.State}} '
        "{{if .Status}}{{.Status}}{{end}}"
    )
    return [
        "docker",
        "ps",
        *(["-a"] if all_states else []),
        *label_filter(project, service),
        "--format",
        fmt,
    ]


def scale_up(stack: Stack, service: str, replicas: int) -> list[str]:
    """Start extra replicas beside the running ones; never recreate (or scale down) old ones."""
    return stack.cmd(
        "up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={replicas}", service
    )


def remove_containers(ids: list[str]) -> list[str]:
    """Remove containers by ID whatever their state (never by name: v1 and v2 name them apart)."""
    return ["docker", "rm", "-f", *ids]


def file_digests(paths: list[str]) -> list[str]:
    """`sha256sum` of PATHS (a missing file is reported on stderr and left out)."""
    return ["sha256sum", *paths]


def container_ips(ids: list[str]) -> list[str]:
    return [
        "docker",
        "inspect",
        "--format",
        "{{.Id}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        *ids,
    ]


def ensure_network(s: Settings) -> str:
    name = network_name(s)
    return f"docker network inspect {name} >/dev/null 2>&1 || docker network create {name}"


# -- appended for blue-green (cerniq_ops.bluegreen) ------------------------------------------------
def app_service(
    s: Settings, service: str, version: str, *, env_file: str = ".env", labelled: bool = True
) -> dict:
    """One app service's compose spec (image, env file, restart, health check); `labelled`
    adds the Traefik labels of the rolling deploy's docker-provider routers."""
    spec = _service(s, service, version)
    spec["env_file"] = [env_file]
    if not labelled:
        spec.pop("labels", None)
    return spec


def dump(doc: dict) -> str:
    """A YAML document as cerniq-ops writes it (with the do-not-edit header)."""
    return _dump(doc)
