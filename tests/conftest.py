"""Shared fixtures. Tests that need the testbed get it from the `testbed` fixture (one per module).

The tests' testbed has its own name prefix, subnet and folder, so it never touches a testbed a
developer has up (`invoke testbed.up`). Override with CERNIQ_TEST_TESTBED_* if these collide.
Under pytest-xdist (`make test` runs two workers, one module per worker at a time) each worker
gets its own: prefix `cqt0`/`cqt1`, net `10.78.0`/`10.78.1`, folder `.testbed-test/gw0`/`gw1`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
TEST_PREFIX = os.environ.get("CERNIQ_TEST_TESTBED_PREFIX", "cqt")
TEST_NET = os.environ.get("CERNIQ_TEST_TESTBED_NET", "10.78.0")
TEST_DIR = Path(os.environ.get("CERNIQ_TEST_TESTBED_DIR", PROJECT / ".testbed-test"))
# the slowest modules first (junit durations on 2 busy cores, seconds): workers start on the
# longest
SLOWEST_FIRST = (
    "tests/e2e/test_recovery_deploy.py",  # 1195
    "tests/e2e/test_recovery_bluegreen.py",  # 1073
    "tests/e2e/test_recovery_rollback.py",  # 713
    "tests/e2e/test_recovery_restore.py",  # 380
    "tests/e2e/test_setup.py",  # 360 (with two other testbeds busy)
    "tests/e2e/test_toolbox.py",  # 372 (load average ~30)
    "tests/e2e/test_bluegreen.py",  # 250
    "tests/e2e/test_waves.py",  # 174 (alone)
    "tests/e2e/test_deploy.py",  # 216
    "tests/e2e/test_rollback.py",  # 174
    "tests/e2e/test_verify.py",  # 114
    "tests/integration/test_backup.py",  # 73
    "tests/e2e/test_nonroot.py",  # 47
)


def worker_testbed(worker: str | None) -> tuple[str, str, Path]:
    """(prefix, net, folder) of the tests' testbed for an xdist worker ('gw1'), or alone (None)."""
    if not worker:
        return TEST_PREFIX, TEST_NET, TEST_DIR
    n = int(worker.removeprefix("gw"))
    a, b, c = TEST_NET.split(".")
    return f"{TEST_PREFIX}{n}", f"{a}.{b}.{int(c) + n}", TEST_DIR / worker


def pytest_collection_modifyitems(config, items):
    """Run the slowest modules first, so pytest-xdist's per-module scheduling balances (`make
    test` passes --no-loadscope-reorder: xdist would order the modules by their test count)."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(scope="module")
def testbed(request):
    """A fresh testbed for each test module (modules never see each other's leftovers), taken
    down at the module's end with nothing left behind. A module's
    `TESTBED_PRODUCTION_APP_HOSTS = 4` gives production that many app hosts (default 2);
    `TESTBED_BARE_ENV = "staging"` makes staging's app and db hosts bare full machines."""
    from testbed.lifecycle import TestbedManager, read_env_file
    from testbed.plan import Testbed

    prefix, net, folder = worker_testbed(os.environ.get("PYTEST_XDIST_WORKER"))
    count = getattr(request.module, "TESTBED_PRODUCTION_APP_HOSTS", 2)
    bare = getattr(request.module, "TESTBED_BARE_ENV", None)
    tb = Testbed(dir=folder, prefix=prefix, net=net, production_app_hosts=count, bare_env=bare)
    manager = TestbedManager(tb, print)
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
