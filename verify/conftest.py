"""The pytest plugin behind `invoke verify`: environment, hosts by role, testinfra hosts, results.

Options (given by cerniq_ops.verification, which runs pytest in a subprocess):
  --cerniq-env ENV        the environment whose settings and inventory are checked
  --cerniq-host NAME      check only this host
  --cerniq-results FILE   write one JSON line per check per host (host, check, status, detail)
  --cerniq-read-only      do not record the audit log's verified prefix (app_root/.audit-verified)

A check declares the hosts it runs on with `@pytest.mark.hosts(ROLE)`: `app_servers`,
`db_servers`, `db_primary` (the environment's database host), `primary` (the app host holding
the deploy lock and markers) or `all`. It is parametrised with a `spec` (HostSpec) per host, and
gets a testinfra `host` connected with an ssh_config written from the inventory's host data
(address, user, port, key, known hosts: host keys are always checked).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import testinfra

from cerniq_ops.settings import HostSpec, Settings

ROLES = ("app_servers", "db_servers", "db_primary", "primary", "all")


def pytest_addoption(parser):
    group = parser.getgroup("cerniq-verify")
    group.addoption("--cerniq-env", required=True, help="staging or production")
    group.addoption("--cerniq-host", default=None, help="check only this host")
    group.addoption("--cerniq-results", default=None, help="JSON lines of results")
    group.addoption(
        "--cerniq-read-only",
        action="store_true",
        help="do not record the audit log's verified prefix on the hosts",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "hosts(role): the hosts a verify check runs on")
    from cerniq_ops import settings as settings_mod
    from cerniq_ops.errors import CerniqError

    try:
        config.cerniq_settings = settings_mod.load(config.getoption("--cerniq-env"))
    except CerniqError as exc:
        raise pytest.UsageError(str(exc)) from None


def hosts_for(s: Settings, role: str) -> list[HostSpec]:
    if role == "all":
        return list(s.hosts)
    if role == "primary":
        return [s.primary_host] if s.app_hosts else []
    if role == "db_primary":
        return [s.db_host] if s.hosts_in("db_servers") else []
    return s.hosts_in(role)


def pytest_generate_tests(metafunc):
    if "spec" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("hosts")
    role = marker.args[0] if marker else "all"
    if role not in ROLES:
        raise pytest.UsageError(f"{metafunc.function.__name__}: unknown host role {role!r}")
    specs = hosts_for(metafunc.config.cerniq_settings, role)
    metafunc.parametrize("spec", specs, ids=[h.name for h in specs])


def pytest_collection_modifyitems(config, items):
    only = config.getoption("--cerniq-host")
    if not only:
        return
    names = {h.name for h in config.cerniq_settings.hosts}
    if only not in names:
        raise pytest.UsageError(
            f"no host {only!r} in {config.cerniq_settings.env}; hosts: {', '.join(sorted(names))}"
        )
    keep = [i for i in items if _host_of(i) == only]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


def _host_of(item) -> str | None:
    spec = getattr(item, "callspec", None) and item.callspec.params.get("spec")
    return spec.name if isinstance(spec, HostSpec) else None


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def settings(pytestconfig) -> Settings:
    return pytestconfig.cerniq_settings


def ssh_config_text(s: Settings, control_dir: str) -> str:
    """An ssh_config for the environment's hosts from their inventory data (pure)."""
    blocks = []
    for h in s.hosts:
        d = h.data
        lines = [
            f"Host {h.name}",
            f"  HostName {h.address}",
            f"  User {d.get('ssh_user', s.ssh_user)}",
            f"  Port {d.get('ssh_port', s.ssh_port)}",
        ]
        if d.get("ssh_key"):
            lines += [f"  IdentityFile {d['ssh_key']}", "  IdentitiesOnly yes"]
        lines.append(f"  UserKnownHostsFile {d.get('ssh_known_hosts_file') or s.known_hosts_file}")
        lines += [
            "  StrictHostKeyChecking yes",  # always: an unknown or changed key is refused
            "  BatchMode yes",
            f"  ControlPath {control_dir}/cm-%C",
            "  ConnectTimeout 10",
            "  LogLevel ERROR",
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@pytest.fixture(scope="session")
def ssh_config(settings, tmp_path_factory) -> str:
    # Control sockets live in a short, private, stable folder (a socket path is limited to
    # ~100 bytes); masters persist 60 s, so the next verify run reuses them.
    control = Path(tempfile.gettempdir()) / f"cerniq-ssh-{os.getuid()}"
    control.mkdir(mode=0o700, exist_ok=True)
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text(ssh_config_text(settings, str(control)))
    return str(path)


_reachable: dict[str, str | None] = {}


@pytest.fixture
def host(spec: HostSpec, ssh_config: str):
    """The testinfra host of SPEC; a check on a host SSH cannot reach errors out naming why."""
    h = testinfra.get_host(f"ssh://{spec.name}", ssh_config=ssh_config)
    if spec.name not in _reachable:
        out = h.run("true")
        why = (out.stderr.strip().splitlines() or [f"exit {out.rc}"])[-1]
        _reachable[spec.name] = None if out.rc == 0 else why
    if _reachable[spec.name]:
        pytest.fail(
            f"cannot reach {spec.name} ({spec.address}) over SSH: {_reachable[spec.name]}; "
            f"run `invoke doctor`"
        )
    return h


@pytest.fixture
def detail(request):
    """detail(text): what a passing check saw, printed on its line."""

    def record(text: str) -> None:
        request.node.user_properties.append(("detail", text))

    return record


# -- results ----------------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    excinfo = call.excinfo
    if excinfo is not None:
        exc = excinfo.value
        if isinstance(exc, pytest.fail.Exception | pytest.skip.Exception):
            message = str(exc.msg)
        else:  # a check that broke: say what broke, not a traceback
            text = str(exc).strip().splitlines()
            message = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
        report.cerniq_message = message
    return report


def pytest_runtest_logreport(report):
    results = _results_path()
    if results is None:
        return
    status = None
    if report.when == "setup" and report.outcome != "passed":
        status = "error" if report.failed else "skip"
    elif report.when == "call":
        status = {"passed": "pass", "failed": "fail", "skipped": "skip"}[report.outcome]
    elif report.when == "teardown" and report.failed:
        status = "error"
    if status is None:
        return
    message = getattr(report, "cerniq_message", None)
    if message is None and status == "skip" and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
    if message is None:
        message = "; ".join(v for k, v in report.user_properties if k == "detail")
    node = report.nodeid.split("::")[-1]
    check, _, host = node.partition("[")
    record = {
        "host": host.rstrip("]"),
        "check": check.removeprefix("test_"),
        "status": status,
        "detail": message,
        "nodeid": report.nodeid,
        "seconds": round(report.duration, 3),
    }
    with open(results, "a") as f:
        f.write(json.dumps(record) + "\n")


_config = None


def pytest_sessionstart(session):
    global _config
    _config = session.config


def _results_path() -> str | None:
    return _config.getoption("--cerniq-results") if _config is not None else None
