# ruff: noqa: E501 (METRICS holds Traefik's own long lines)
"""Pure builders of the blue-green procedure: compose documents, Traefik's dynamic config,
the marker, canary steps and the analysis of Traefik's Prometheus metrics."""

import pytest
import yaml

from cerniq_ops import bluegreen, metrics, settings
from cerniq_ops.bluegreen import Traffic, analyse, canary_steps, parse_marker
from cerniq_ops.errors import BadInput, StepFailed

pytestmark = pytest.mark.unit


@pytest.fixture
def prod():
    return settings.load("production", target="real")


def test_each_color_is_its_own_project_published_on_its_port_without_traefik_labels(prod):
    doc = yaml.safe_load(bluegreen.color_compose(prod, "green", "v1.4.2"))
    api = doc["services"]["api"]
    assert api["image"] == "registry.cerniq.app/cerniq/api:v1.4.2"
    assert api["ports"] == ["64002:80"]
    assert api["env_file"] == [".env.green"]
    assert api["networks"] == {"default": {"aliases": ["api-green"]}}
    assert doc["services"]["web"]["networks"] == {"default": {"aliases": ["web-green"]}}
    assert "networks" not in doc["services"]["workers"]
    assert not any("labels" in spec for spec in doc["services"].values())
    assert doc["networks"]["default"] == {"external": True, "name": "cerniq"}
    assert bluegreen.color_stack(prod, "blue").cmd("up", "-d") == [
        "docker",
        "compose",
        "-p",
        "cerniq-blue",
        "-f",
        "/opt/cerniq/docker-compose.blue.yml",
        "up",
        "-d",
    ]
    docs = bluegreen.color_documents(prod, "blue", "v1.4.2", "pw")
    assert docs[".env.blue"][1] == "600" and "CERNIQ_VERSION=v1.4.2" in docs[".env.blue"][0]


def test_dynamic_config_routes_the_active_color_failing_over_to_the_other():
    http = bluegreen.dynamic_config("green")["http"]
    assert http["routers"]["cerniq-app"] == {
        "rule": "PathPrefix(`/`)",
        "entryPoints": ["web"],
        "priority": 10000,
        "service": "cerniq-green-first",
        "middlewares": ["cerniq-color-green"],
    }
    assert http["routers"]["cerniq-web"]["service"] == "cerniq-web-green-first"
    assert http["routers"]["cerniq-web"]["middlewares"] == [
        "cerniq-web-strip",
        "cerniq-color-green",
    ]
    assert http["services"]["cerniq-green-first"] == {
        "failover": {"service": "cerniq-green", "fallback": "cerniq-blue"}
    }
    assert http["services"]["cerniq-blue"] == {
        "loadBalancer": {
            "servers": [{"url": "http://api-blue:80"}],
            "healthCheck": {"path": "/health", "interval": "1s", "timeout": "3s"},
        }
    }
    assert http["routers"]["cerniq-preview-blue"]["rule"] == "Header(`X-Cerniq-Color`, `blue`)"
    assert http["middlewares"]["cerniq-color-blue"] == {
        "headers": {"customResponseHeaders": {"X-Cerniq-Color": "blue"}}
    }


def test_first_rollout_config_has_only_previews_and_canary_config_is_weighted():
    first = bluegreen.dynamic_config(None)["http"]
    assert set(first["routers"]) == {
        "cerniq-preview-blue",
        "cerniq-preview-blue-web",
        "cerniq-preview-green",
        "cerniq-preview-green-web",
    }
    canary = bluegreen.dynamic_config("blue", 10)["http"]
    assert canary["routers"]["cerniq-app"]["service"] == "cerniq-canary"
    assert "middlewares" not in canary["routers"]["cerniq-app"]
    assert canary["services"]["cerniq-canary"] == {
        "weighted": {
            "healthCheck": {},
            "services": [
                {"name": "cerniq-blue", "weight": 90},
                {"name": "cerniq-green", "weight": 10},
            ],
        }
    }
    for bad in (0, 100):
        with pytest.raises(BadInput):
            bluegreen.dynamic_config("blue", bad)


def test_rendered_config_is_yaml_of_the_document():
    text = bluegreen.render(bluegreen.dynamic_config("blue"))
    assert text.startswith("# Written by cerniq-ops")
    assert yaml.safe_load(text) == bluegreen.dynamic_config("blue")


@pytest.mark.parametrize(
    ("text", "color"),
    [("blue\n", "blue"), ("green", "green"), (" green \n", "green"), (None, None)],
)
def test_marker_is_blue_green_or_absent(text, color):
    assert parse_marker(text, "prod-app1") == color


@pytest.mark.parametrize("text", ["purple", "", "blue green", "BLUE"])
def test_any_other_marker_is_a_clear_error(text):
    with pytest.raises(StepFailed, match="active-env on prod-app1 holds .* nothing was changed"):
        parse_marker(text, "prod-app1")


def test_canary_steps_are_increasing_percentages_ending_at_100():
    assert canary_steps("10,50,100") == [10, 50, 100]
    assert canary_steps("10, 50") == [10, 50, 100]
    assert canary_steps([25]) == [25, 100]
    for bad in ("50,10", "0,50", "10,150", "ten", "", "10,10"):
        with pytest.raises(BadInput, match="invalid --steps"):
            canary_steps(bad)


METRICS = """# HELP traefik_service_requests_total How many HTTP requests processed on a service.
traefik_service_requests_total{code="200",method="GET",protocol="http",service="cerniq-blue@file"} 90
traefik_service_requests_total{code="502",method="GET",protocol="http",service="cerniq-green@file"} 3
traefik_service_requests_total{code="200",method="GET",protocol="http",service="cerniq-green@file"} 7
traefik_service_requests_total{code="499",method="GET",protocol="http",service="cerniq-green@file"} 1
traefik_service_request_duration_seconds_sum{code="200",method="GET",protocol="http",service="cerniq-blue@file"} 0.9
traefik_service_request_duration_seconds_count{code="200",method="GET",protocol="http",service="cerniq-blue@file"} 90
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="cerniq-blue@file",le="0.1"} 90
traefik_entrypoint_requests_total{code="200",entrypoint="web",method="GET",protocol="http"} 101
"""


def test_service_traffic_counts_requests_5xx_and_seconds_per_service():
    assert metrics.by_service(metrics.parse(METRICS)) == {
        "cerniq-blue@file": Traffic(90, 0, 0.9),
        "cerniq-green@file": Traffic(11, 3, 0),
    }
    assert Traffic(11, 3, 0.5) - Traffic(1, 1, 0.25) == Traffic(10, 2, 0.25)


LIMITS = {"max_error_rate": 0.05, "latency_factor": 3.0, "latency_floor": 0.05, "min_requests": 20}


@pytest.mark.parametrize(
    ("new", "old", "ok", "detail"),
    [
        (Traffic(100, 5, 1.0), Traffic(100, 0, 1.0), True, "100 requests, 5.0% errors"),
        (Traffic(100, 6, 1.0), Traffic(100, 0, 1.0), False, "100 requests, 6.0% errors (limit 5%)"),
        (Traffic(100, 0, 31.0), Traffic(100, 0, 10.0), False, "above 3x the old color"),
        (Traffic(100, 0, 30.0), Traffic(100, 0, 10.0), True, "mean 300.0 ms, old 100.0 ms"),
        (Traffic(100, 0, 4.0), Traffic(100, 0, 1.0), True, "mean 40.0 ms, old 10.0 ms"),
        (Traffic(100, 0, 9.0), None, True, "mean 90.0 ms"),
        (Traffic(19, 19, 0), Traffic(100, 0, 1.0), True, "too few to judge (< 20)"),
    ],
)
def test_analysis_applies_the_seed_rollback_thresholds(new, old, ok, detail):
    verdict = analyse(new, old, **LIMITS)
    assert verdict.ok is ok and detail in verdict.detail
