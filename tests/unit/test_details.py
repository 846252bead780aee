"""`invoke details`' pure parts (cerniq_ops.details): docker ps, Traefik's API, the audit log,
and the text shown, by equality."""

from __future__ import annotations

import pytest

from cerniq_ops import details, settings

pytestmark = pytest.mark.unit
R = "registry.cerniq.app/cerniq"


@pytest.fixture
def prod(monkeypatch):
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    return settings.load("production")


def test_containers_of_the_app_and_its_edge_with_version_health_uptime(prod):
    out = (
        f"0123456789abcdef|{R}/api:v1.2.0|cerniq|api|running|Up 7 minutes (healthy)\n"
        f"fedcba987654aaaa|{R}/traefik:v3.7.15|cerniq-edge|traefik|running|Up 20 minutes\n"
        f"aaaa|{R}/web:v1.1.0|cerniq-green|web|exited|Exited (0) 2 hours ago\n"
        "bbbb|postgres:15|other|db|running|Up 1 day\n"
    )
    assert details.parse_containers(out, prod) == [
        {
            "project": "cerniq",
            "service": "api",
            "version": "v1.2.0",
            "state": "running",
            "health": "healthy",
            "uptime": "Up 7 minutes",
            "id": "0123456789ab",
        },
        {
            "project": "cerniq-edge",
            "service": "traefik",
            "version": "v3.7.15",
            "state": "running",
            "health": "-",
            "uptime": "Up 20 minutes",
            "id": "fedcba987654",
        },
        {
            "project": "cerniq-green",
            "service": "web",
            "version": "v1.1.0",
            "state": "exited",
            "health": "-",
            "uptime": "Exited (0) 2 hours ago",
            "id": "aaaa",
        },
    ]


def test_traefik_routers_and_servers_of_our_providers():
    api_routers = [
        {
            "name": "api@docker",
            "provider": "docker",
            "rule": "PathPrefix(`/`)",
            "service": "api",
            "status": "enabled",
            "priority": 16,
        },
        {"name": "dashboard@internal", "provider": "internal"},
    ]
    assert details.routers(api_routers) == [
        {
            "name": "api@docker",
            "rule": "PathPrefix(`/`)",
            "service": "api",
            "status": "enabled",
            "priority": "16",
        },
    ]
    api_services = [
        {
            "name": "api@docker",
            "provider": "docker",
            "serverStatus": {"http://b:80": "DOWN", "http://a:80": "UP"},
        },
        {"name": "noop@internal", "provider": "internal"},
    ]
    assert details.services(api_services) == [
        {"name": "api@docker", "servers": {"http://a:80": "UP", "http://b:80": "DOWN"}},
    ]


def test_last_change_is_the_newest_deploy_switch_or_rollback():
    records = [
        {"procedure": "deploy", "step": "notify_deployment", "version": "v1.1.0"},
        {"procedure": "rollback", "step": "close_incident", "version": "v1.0.0"},
        {"procedure": "exec", "step": "api"},
        {"procedure": "backup.create", "step": "dump"},
    ]
    assert details.last_change(records) == records[1]
    assert details.last_change([{"procedure": "prune"}]) is None


def test_render():
    doc = {
        "env": "production",
        "hosts": [
            {
                "host": "prod-app1",
                "address": "10.0.0.1",
                "active_color": "blue",
                "maintenance": True,
                "containers": [
                    {
                        "project": "cerniq-blue",
                        "service": "api",
                        "version": "v1.2.0",
                        "state": "running",
                        "health": "healthy",
                        "uptime": "Up 1 hour",
                        "id": "abc",
                    },
                ],
                "routers": [
                    {
                        "name": "cerniq-app@file",
                        "rule": "PathPrefix(`/`)",
                        "service": "cerniq-blue-first",
                        "status": "enabled",
                    }
                ],
                "services": [{"name": "cerniq-blue@file", "servers": {"http://api-blue:80": "UP"}}],
            },
            {
                "host": "prod-app2",
                "address": "10.0.0.2",
                "active_color": None,
                "maintenance": False,
                "containers": [],
                "traefik_error": "Traefik's API down",
            },
        ],
        "lock": None,
        "last_change": {
            "at": "2026-12-03T11:00:00Z",
            "who": "ana@ci",
            "procedure": "deploy",
            "version": "v1.2.0",
            "step": "notify_deployment",
            "result": "ok",
        },
    }
    assert details.render(doc) == [
        "== prod-app1 (10.0.0.1): active color blue, maintenance ON",
        "   container        version  state    health   uptime     id",
        "   ---------------  -------  -------  -------  ---------  ---",
        "   cerniq-blue/api  v1.2.0   running  healthy  Up 1 hour  abc",
        "   traefik routers",
        "     cerniq-app@file  PathPrefix(`/`)  -> cerniq-blue-first  enabled",
        "   traefik servers",
        "     cerniq-blue@file: http://api-blue:80 UP",
        "== prod-app2 (10.0.0.2): active color -, maintenance off",
        "   container  version  state  health  uptime  id",
        "   ---------  -------  -----  ------  ------  --",
        "   traefik: Traefik's API down",
        "== production: lock free",
        "   last change: 2026-12-03T11:00:00Z ana@ci deploy v1.2.0: notify_deployment ok",
    ]
