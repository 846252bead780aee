"""The smoke suite (seed: `npm run test:smoke -- --env=...`): run against an environment's URL.

CERNIQ_SMOKE_URL=http://host:64000 CERNIQ_SMOKE_VERSION=v1.2.0 pytest smoke
CERNIQ_SMOKE_HEADERS='{"X-Cerniq-Color": "green"}' adds headers to every request (blue-green
tests the idle color through Traefik that way).
"""

import json
import os

import requests

URL = os.environ.get("CERNIQ_SMOKE_URL", "http://127.0.0.1:64000").rstrip("/")
VERSION = os.environ.get("CERNIQ_SMOKE_VERSION")
HEADERS = json.loads(os.environ.get("CERNIQ_SMOKE_HEADERS") or "{}")


def test_api_health_is_ok():
    r = requests.get(f"{URL}/health", timeout=5, headers=HEADERS)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    if VERSION:
        assert r.json()["version"] == VERSION


def test_api_reports_its_version():
    r = requests.get(f"{URL}/version", timeout=5, headers=HEADERS)
    assert r.status_code == 200
    assert r.text.strip() == (VERSION or r.text.strip())


def test_web_is_served():
    r = requests.get(f"{URL}/web/health", timeout=5, headers=HEADERS)
    assert r.status_code == 200
    assert r.json()["service"] == "web"
