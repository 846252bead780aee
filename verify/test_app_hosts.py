"""Checks of each app host: files and markers under app_root, containers, Traefik, active color."""

from __future__ import annotations

import shlex
import time

import pytest

from cerniq_ops import audit_checks as ac
from cerniq_ops import compose
from cerniq_ops.rollout import parse_ps
from verify.helpers import load_yaml, problems_or_pass, read, read_many, stat_paths, traefik_api

pytestmark = pytest.mark.hosts("app_servers")
HEALTH_SETTLE_SECONDS = 10  # a running container on the right image may be between probes


def _root(settings) -> str:
    return settings.app_root.rstrip("/")


def _active_color(host, settings) -> str | None:
    return ac.marker_value(read(host, f"{_root(settings)}/active-env"))


def test_files(host, settings, detail):
    """The compose files, the env file (mode 600) and Traefik's dynamic folder under app_root."""
    color = _active_color(host, settings)
    expected = ac.expected_app_files(settings.app_root, color if color in ac.COLORS else None)
    problems = ac.file_problems(expected, stat_paths(host, [e.path for e in expected]))
    names = ", ".join(e.path.removeprefix(_root(settings) + "/") for e in expected if e.required)
    problems_or_pass(problems, detail, f"{_root(settings)}: {names}; env files mode 600")


def test_markers(host, settings, detail):
    """current-version (and previous-version, active-env when present) hold valid values."""
    root = _root(settings)
    required = {"current-version": True, "previous-version": False, "active-env": False}
    contents = read_many(host, [f"{root}/{name}" for name in required])
    problems, seen = [], []
    for name, needed in required.items():
        path = f"{root}/{name}"
        problem = ac.marker_problem(path, contents[path], required=needed)
        if problem:
            problems.append(problem)
        elif contents[path] is not None:
            seen.append(f"{name} {contents[path].strip()}")
    problems_or_pass(problems, detail, ", ".join(seen))


def test_containers(host, settings, detail):
    """Every service's containers run the version in current-version, healthy; Traefik runs."""
    root = _root(settings)
    markers = read_many(host, [f"{root}/current-version", f"{root}/active-env"])
    version = ac.marker_value(markers[f"{root}/current-version"])
    if ac.marker_problem(f"{root}/current-version", version, required=True):
        pytest.fail(
            f"cannot tell which version should run: {root}/current-version is missing or "
            f"invalid ({version!r})",
            pytrace=False,
        )
    color = ac.marker_value(markers[f"{root}/active-env"])
    bluegreen = color in ac.COLORS
    project = f"{settings.compose_project}-{color}" if bluegreen else settings.compose_project
    expected = {svc: settings.image(svc, version) for svc in settings.services}
    # a color runs one replica of each service; a rolling deploy api_replicas of the api
    replicas = {
        svc: settings.api_replicas if svc == "api" and not bluegreen else 1
        for svc in settings.services
    }
    listing = shlex.join(compose.list_containers(project, all_states=True))
    deadline = time.monotonic() + HEALTH_SETTLE_SECONDS
    while True:
        containers = parse_ps(host.check_output(listing))
        problems = ac.container_problems(containers, expected, replicas, project)
        settling = ac.health_settling(containers, expected, replicas)
        if not problems or not settling or time.monotonic() >= deadline:
            break
        time.sleep(1)  # only health is wanting: look again until the deadline
    edge = f"{settings.compose_project}-edge"
    listed_edge = host.check_output(shlex.join(compose.list_containers(edge, all_states=True)))
    problems += ac.edge_problems(parse_ps(listed_edge), edge)
    counts = ", ".join(f"{svc} x{replicas[svc]}" for svc in settings.services)
    problems_or_pass(problems, detail, f"{counts} healthy on {version} ({project}); traefik up")


def test_traefik(host, settings, detail):
    """Traefik's API answers; every router of ours is enabled and no server of ours is DOWN."""
    color = _active_color(host, settings)
    idle = (
        ac.color_services("green" if color == "blue" else "blue") if color in ac.COLORS else set()
    )
    deadline = time.monotonic() + HEALTH_SETTLE_SECONDS
    while True:  # Traefik probes every second: a server DOWN may be between two probes
        routers = traefik_api(host, "http/routers") or []
        services = traefik_api(host, "http/services") or []
        problems = ac.traefik_problems(routers, services, idle)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(1)
    ours = [r for r in routers if r.get("provider") in ("docker", "file")]
    problems_or_pass(
        problems, detail, f"API answers; {len(ours)} router(s) enabled, no server of ours DOWN"
    )


def test_active_color(host, settings, detail):
    """Blue-green: traefik/dynamic/active.yml and Traefik's API route to the active color."""
    root = _root(settings)
    marker, config_path = f"{root}/active-env", f"{root}/traefik/dynamic/active.yml"
    contents = read_many(host, [marker, config_path])
    if contents[marker] is None and contents[config_path] is None:
        pytest.skip(f"no blue-green in {settings.env} (no {marker})")
    color = ac.marker_value(contents[marker])
    config = load_yaml(contents[config_path])
    api_router = traefik_api(host, f"http/routers/{ac.BLUEGREEN_ROUTER}@file")
    api_service = None
    if api_router and api_router.get("service"):
        named = str(api_router["service"]).split("@", 1)[0]
        api_service = traefik_api(host, f"http/services/{named}@file")
    problems = ac.active_color_problems(color, config_path, config, api_router, api_service)
    problems_or_pass(
        problems, detail, f"{ac.BLUEGREEN_ROUTER} -> cerniq-{color} in {config_path} and the API"
    )


def test_maintenance(host, settings, detail):
    """Maintenance mode (`invoke maintenance on`): reported; its file and Traefik agree."""
    root = _root(settings)
    config_path = f"{root}/traefik/dynamic/maintenance.yml"
    contents = read_many(host, [config_path, f"{root}/maintenance/since"])
    router = traefik_api(host, f"http/routers/{ac.MAINTENANCE_ROUTER}@file")
    problems, passed = ac.maintenance_report(
        config_path,
        contents[config_path] is not None,
        router,
        contents[f"{root}/maintenance/since"],
    )
    problems_or_pass(problems, detail, passed)
