"""Prune's pure parts (cerniq_ops.prune): what `docker ps`/`docker images` say, and what goes."""

from __future__ import annotations

import pytest

from cerniq_ops import prune, settings
from cerniq_ops.errors import BadInput
from cerniq_ops.prune import Box, Image

pytestmark = pytest.mark.unit
REPO = "registry.cerniq.app/cerniq"


@pytest.fixture
def prod(monkeypatch):
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    return settings.load("production")


def images(*versions: str, services=("api", "web")) -> list[Image]:
    return [Image(f"{REPO}/{svc}", v) for v in versions for svc in services]


def test_commands_are_argument_lists():
    assert prune.containers_command() == [
        *("docker", "ps", "-a", "--filter", "label=com.docker.compose.project", "--format"),
        '{{.ID}} {{.Image}} {{.Label "com.docker.compose.project"}} '
        '{{.Label "com.docker.compose.service"}} {{.State}}',
    ]
    assert prune.images_command() == [
        *("docker", "images", "--format", "{{.Repository}} {{.Tag}}"),
    ]


def test_parsing_keeps_only_the_apps_containers_and_release_images(prod):
    ps = (
        f"a1 {REPO}/api:v1.2.0 cerniq api running\n"
        f"b2 {REPO}/api:v1.1.0 cerniq-blue api exited\n"
        f"c3 {REPO}/traefik:v3.7.15 cerniq-edge traefik running\n"
        "d4 postgres:15 other db exited\n"
    )
    assert prune.parse_containers(ps, prod) == [
        Box("a1", f"{REPO}/api:v1.2.0", "cerniq", "api", "running"),
        Box("b2", f"{REPO}/api:v1.1.0", "cerniq-blue", "api", "exited"),
    ]
    listed = (
        f"{REPO}/api v1.2.0\n{REPO}/web v1.2.0-rc.1\n{REPO}/api latest\n"
        f"{REPO}/traefik v3.7.15\n{REPO}/busybox 1.36\n<none> <none>\n"
    )
    assert prune.parse_images(listed, prod) == [
        Image(f"{REPO}/api", "v1.2.0"),
        Image(f"{REPO}/web", "v1.2.0-rc.1"),
    ]


def test_plan_keeps_newest_n_current_previous_and_what_runs():
    running = Box("a1", f"{REPO}/api:v1.0.0", "cerniq-green", "api", "running")  # idle color
    exited = Box("e1", f"{REPO}/api:v1.1.0", "cerniq", "api", "exited")
    p = prune.plan(
        [running, exited],
        images("v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0"),
        2,
        current="v1.4.0",
        previous="v1.2.0",
    )
    assert p.containers == (exited,)
    assert p.images == tuple(images("v0.9.0", "v1.1.0"))
    assert p.kept == ("v1.4.0", "v1.3.0", "v1.2.0", "v1.0.0")
    assert p.lines("prod-app1") == [
        "prod-app1: container e1 (cerniq/api, v1.1.0, exited)",
        f"prod-app1: image {REPO}/api:v0.9.0",
        f"prod-app1: image {REPO}/web:v0.9.0",
        f"prod-app1: image {REPO}/api:v1.1.0",
        f"prod-app1: image {REPO}/web:v1.1.0",
    ]


def test_plan_never_removes_current_or_previous_even_with_retain_one():
    p = prune.plan([], images("v1.0.0", "v1.1.0", "v2.0.0"), 1, "v1.1.0", "v1.0.0")
    assert p.images == () and p.kept == ("v2.0.0", "v1.1.0", "v1.0.0")


def test_retain_is_a_whole_number_from_1():
    assert prune.retain_count(None) == 3 and prune.retain_count("5") == 5
    for bad in ("0", "x", "1.5", "101"):
        with pytest.raises(BadInput, match="invalid --retain"):
            prune.retain_count(bad)
