"""`invoke bluegreen.*` with a bad option: exit 2, one `error:` line, and nothing connects: the
environment's SSH port and registry are local listeners that count connections, and the Slack
stand-in counts posts. A valid command against the same environment does connect (the
listeners can see it), so the counts of zero are not vacuous."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.support.cli import invoke
from tests.support.outside import SlackWebhook

pytestmark = pytest.mark.unit
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")


class Listener:
    """A TCP port on loopback that accepts, counts and closes every connection."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def unreachable_env(tmp_path_factory):
    """CERNIQ_TARGET=testbed aimed at a folder whose production hosts and registry are
    listeners on 127.0.0.1 (nothing leaves the machine)."""
    ssh, registry = Listener(), Listener()
    folder = tmp_path_factory.mktemp("testbed")
    (folder / "inventories").mkdir()
    (folder / "group_data").mkdir()
    host = {"ssh_hostname": "127.0.0.1", "ssh_port": ssh.port}
    (folder / "inventories" / "production.py").write_text(
        f"app_servers = [('prod-app1', {host!r}), ('prod-app2', {host!r})]\n"
        f"db_servers = [('prod-db1', {{**{host!r}, 'db_primary': True}})]\n"
    )
    (folder / "group_data" / "production.py").write_text(
        f"registry = '127.0.0.1:{registry.port}'\n"
        "public_url = 'http://127.0.0.1:9'\n"
        "db_password_env = 'CERNIQ_UNREACHABLE_DB_PASSWORD'\n"
    )
    env = {
        "CERNIQ_TARGET": "testbed",
        "CERNIQ_TESTBED_DIR": str(folder),
        "CERNIQ_UNREACHABLE_DB_PASSWORD": "pw",
    }
    yield env, ssh, registry
    ssh.close()
    registry.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("canary", "--pause", "-1", *CONFIRM), "invalid --pause '-1'"),
        (("canary", "--version", "v1.1.0", "--pause", "-1", *CONFIRM), "invalid --pause '-1'"),
        (("canary", "--steps", "50,10", *CONFIRM), "invalid --steps '50,10'"),
        (("canary", "--steps", "10,abc", *CONFIRM), "invalid --steps '10,abc'"),
        (("switch", "--to", "purple", *CONFIRM), "invalid --to 'purple'"),
        (("switch", "--analysis-seconds", "soon", *CONFIRM), "invalid --analysis-seconds 'soon'"),
        (("deploy", "--version", "1.2; rm -rf /", *CONFIRM), "invalid version"),
        (("deploy", "--version", "v1.1.0", "--analysis-seconds", "-3"), "invalid --analysis"),
        (("stop-idle", "--delay", "-1", *CONFIRM), "invalid --delay '-1'"),
        (("switch",), "needs confirmation"),
    ],
)
def test_bad_input_exits_2_with_one_line_connecting_to_nothing(unreachable_env, args, message):
    env, ssh, registry = unreachable_env
    slack = SlackWebhook()
    try:
        before = (ssh.accepted, registry.accepted)
        r = invoke(
            f"bluegreen.{args[0]}",
            "--env",
            "production",
            *args[1:],
            env={**env, "CERNIQ_SLACK_WEBHOOK": slack.webhook},
        )
        posts = slack.texts()
    finally:
        slack.close()
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert (ssh.accepted, registry.accepted) == before  # no SSH, no registry
    assert posts == []


def test_the_listeners_do_see_a_command_that_connects(unreachable_env):
    env, ssh, _ = unreachable_env
    before = ssh.accepted
    r = invoke("bluegreen.switch", "--env", "production", *CONFIRM, env=env)
    assert r.returncode == 1 and "cannot connect to" in r.stderr, r.stderr
    assert ssh.accepted > before
