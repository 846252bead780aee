"""cerniq_ops.hosts' pure parts: how a failed host command is told in one line."""

import pytest

from cerniq_ops import hosts

pytestmark = pytest.mark.unit


def test_a_failed_command_is_told_by_its_error_line_not_composes_trailer():
    compose_v1 = (
        "Creating cerniq_api_6 ... \n"
        "ERROR: for cerniq_api_6  Cannot create container for service api: Conflict. The "
        'container name "/cerniq_api_6" is already in use\n'
        "\n"
        "ERROR: for api  Cannot create container for service api: Conflict. The container "
        'name "/cerniq_api_6" is already in use\n'
        "Encountered errors while bringing up the project.\n"
    )
    assert hosts.failure_detail(compose_v1) == (
        "ERROR: for api  Cannot create container for service api: Conflict. The container "
        'name "/cerniq_api_6" is already in use'
    )
    assert hosts.failure_detail("pulling\nError response from daemon: manifest unknown\n") == (
        "Error response from daemon: manifest unknown"
    )
    assert hosts.failure_detail("df: /backup: No such file\n") == "df: /backup: No such file"
    assert hosts.failure_detail("") == "no output"


def test_a_channel_that_never_opened_runs_the_command_again_on_a_new_connection():
    from types import SimpleNamespace

    from paramiko import SSHException
    from pyinfra.connectors.util import CommandOutput, OutputLine

    calls: list[str] = []
    transport = SimpleNamespace(is_active=lambda: True)
    client = SimpleNamespace(get_transport=lambda: transport)

    class Host:
        name = "app1"
        connected = True
        connector = SimpleNamespace(client=client, disconnect=lambda: calls.append("disconnect"))

        def connect(self, **_kwargs):
            calls.append("connect")

        def run_shell_command(self, command, **_kwargs):
            calls.append(command.get_raw_value())
            if calls.count("echo hi") == 1:
                raise SSHException("Unable to open channel.")
            return True, CommandOutput([OutputLine("stdout", "hi")])

    assert hosts.sh(Host(), "echo hi") == (True, "hi", "")
    assert calls == ["echo hi", "disconnect", "connect", "echo hi"]

    class Dropped(Host):
        def run_shell_command(self, command, **_kwargs):  # the command may have run: no retry
            raise SSHException("Server connection dropped: ")

    with pytest.raises(hosts.StepFailed, match="SSH connection lost running `true`"):
        hosts.sh(Dropped(), "true")
