"""Shared fixtures. Tests that need the testbed get it from the `testbed` fixture (one per module).

The tests' testbed has its own name prefix, subnet and folder, so it never touches a testbed a
developer has up (`invoke testbed.up`). Override with CERNIQ_TEST_TESTBED_* if these collide.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
TEST_PREFIX = os.environ.get("CERNIQ_TEST_TESTBED_PREFIX", "cqt")
TEST_NET = os.environ.get("CERNIQ_TEST_TESTBED_NET", "10.78.0")
TEST_DIR = Path(os.environ.get("CERNIQ_TEST_TESTBED_DIR", PROJECT / ".testbed-test"))


@pytest.fixture(scope="module")
def testbed():
    """A fresh testbed for each test module (modules never see each other's leftovers), taken
    down at the module's end with nothing left behind."""
    from testbed.lifecycle import TestbedManager, read_env_file
    from testbed.plan import Testbed

    manager = TestbedManager(Testbed(dir=TEST_DIR, prefix=TEST_PREFIX, net=TEST_NET), print)
    manager.up()
    saved = dict(os.environ)
    os.environ.update(read_env_file(manager.tb.env_file))
    try:
        yield manager
    finally:
        os.environ.clear()
        os.environ.update(saved)
        manager.down()
        left = manager.leftovers()
        assert not left, f"testbed down left behind: {left}"


@pytest.fixture(scope="module")
def ssh_config(testbed) -> str:
    return str(testbed.tb.ssh_config)


@pytest.fixture(scope="module")
def testinfra_host(ssh_config):
    """testinfra_host('prod-app1') -> a testinfra Host over SSH (ControlPath keeps it fast)."""
    import testinfra

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = testinfra.get_host(f"ssh://{name}", ssh_config=ssh_config)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def root_host(testinfra_host):
    """root_host('prod-db') -> a testinfra Host logged in as root (`<host>-root` in the ssh
    config), for tests that break a host on purpose; procedures and checks use deploy."""
    return lambda name: testinfra_host(f"{name}-root")


@pytest.fixture
def slack(monkeypatch):
    """A Slack incoming-webhook stand-in; CERNIQ_SLACK_WEBHOOK points at it."""
    from tests.support.outside import SlackWebhook

    server = SlackWebhook()
    monkeypatch.setenv("CERNIQ_SLACK_WEBHOOK", server.webhook)
    yield server
    server.close()


@pytest.fixture
def github(monkeypatch):
    """A GitHub Actions API stand-in; settings' github_api and GITHUB_TOKEN point at it."""
    from tests.support.outside import GitHubActions

    server = GitHubActions()
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_API", server.url)
    monkeypatch.setenv("GITHUB_TOKEN", server.token)
    yield server
    server.close()
