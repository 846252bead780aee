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
