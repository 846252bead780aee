"""Maintenance mode's pure builders (cerniq_ops.maintenance), exact strings: Traefik's dynamic
config, the page server's compose file, the page; its input checks; verify's report."""

from __future__ import annotations

import pytest

from cerniq_ops import audit_checks as ac
from cerniq_ops import maintenance, settings
from cerniq_ops.errors import BadInput

pytestmark = pytest.mark.unit

EXPECTED_YAML = """\
# Written by cerniq-ops; changes here are overwritten.
http:
  routers:
    cerniq-maintenance:
      rule: PathPrefix(`/`) && !Path(`/health`)
      entryPoints:
      - web
      priority: 100000
      service: cerniq-maintenance-503
      middlewares:
      - cerniq-maintenance-headers
      - cerniq-maintenance-page
  services:
    cerniq-maintenance-503:
      loadBalancer:
        servers: []
    cerniq-maintenance-page:
      loadBalancer:
        servers:
        - url: http://cerniq-maintenance:80
  middlewares:
    cerniq-maintenance-headers:
      headers:
        customResponseHeaders:
          Retry-After: '120'
          Cache-Control: no-store
          X-Cerniq-Maintenance: 'on'
    cerniq-maintenance-page:
      errors:
        status:
        - '503'
        service: cerniq-maintenance-page
        query: /
"""

EXPECTED_COMPOSE = """\
# Written by cerniq-ops; changes here are overwritten.
version: '3.7'
services:
  page:
    image: registry.cerniq.app/cerniq/busybox:1.36
    command:
    - httpd
    - -f
    - -p
    - '80'
    - -h
    - /www
    volumes:
    - /opt/cerniq/maintenance:/www:ro
    restart: unless-stopped
    networks:
      default:
        aliases:
        - cerniq-maintenance
networks:
  default:
    external: true
    name: cerniq
"""


@pytest.fixture
def prod(monkeypatch):
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    return settings.load("production")


def test_dynamic_config_routes_everything_but_health_to_a_503_with_the_page():
    assert maintenance.render(120) == EXPECTED_YAML


def test_page_server_compose(prod):
    assert maintenance.page_compose(prod) == EXPECTED_COMPOSE
    assert maintenance.dynamic_path(prod) == "/opt/cerniq/traefik/dynamic/maintenance.yml"
    assert maintenance.page_stack(prod).cmd("up", "-d") == [
        *("docker", "compose", "-p", "cerniq-maintenance"),
        *("-f", "/opt/cerniq/docker-compose.maintenance.yml", "up", "-d"),
    ]


def test_page_escapes_the_message():
    assert maintenance.page_html("DB upgrade <b>&", "2026-12-03T11:00:00Z") == (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><title>Maintenance - Cerniq</title></head>\n'
        "<body><h1>Maintenance</h1><p>DB upgrade &lt;b&gt;&amp;</p>"
        "<p><small>Since 2026-12-03T11:00:00Z</small></p></body></html>\n"
    )


def test_inputs_default_and_refuse_bad_values():
    assert maintenance.validate({}) == {
        "message": maintenance.DEFAULT_MESSAGE,
        "retry_after": 300,
    }
    assert maintenance.validate({"message": " back at 14:00 ", "retry_after": "60"}) == {
        "message": "back at 14:00",
        "retry_after": 60,
    }
    with pytest.raises(BadInput, match="invalid --message"):
        maintenance.validate({"message": "two\nlines"})
    with pytest.raises(BadInput, match="invalid --message"):
        maintenance.validate({"message": "x" * 501})
    with pytest.raises(BadInput, match=r"invalid --retry-after 'soon'"):
        maintenance.validate({"retry_after": "soon"})


PATH = "/opt/cerniq/traefik/dynamic/maintenance.yml"


def test_verify_reports_maintenance_mode_and_a_split_state():
    enabled = {"status": "enabled"}
    assert ac.maintenance_report(PATH, False, None, None) == ([], "off")
    assert ac.maintenance_report(PATH, True, enabled, "2026-12-03T11:00:00Z DB upgrade\n") == (
        [],
        "ON since 2026-12-03T11:00:00Z: DB upgrade",
    )
    assert ac.maintenance_report(PATH, True, None, None) == (
        [f"{PATH} is present but router cerniq-maintenance is not known to Traefik"],
        "",
    )
    assert ac.maintenance_report(PATH, False, enabled, None) == (
        [f"Traefik still routes cerniq-maintenance while {PATH} is gone"],
        "",
    )
