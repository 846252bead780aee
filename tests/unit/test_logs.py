"""`invoke logs`' pure parts (cerniq_ops.logs): options, command lines, timestamps, merging."""

from __future__ import annotations

import pytest

from cerniq_ops import logs, settings
from cerniq_ops.errors import BadInput
from cerniq_ops.logs import Line, Query, Source

pytestmark = pytest.mark.unit


@pytest.fixture
def prod(monkeypatch):
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    return settings.load("production")


def test_options_are_checked_before_anything_connects(prod):
    assert logs.check_query(prod, "api", "1h30m", "50", "GET", False) == Query(
        "api", "1h30m", 50, "GET", False
    )
    assert logs.check_query(prod, "traefik", "2026-12-03T10:00:00Z", None, None, True).since
    for args, message in (
        (
            ("db", None, None, None),
            "unknown service 'db'; choose one of: api, web, workers, traefik",
        ),
        (("api", "yesterday", None, None), "invalid --since 'yesterday'"),
        (("api", "10m; rm -rf /", None, None), "invalid --since"),
        (("api", None, "0", None), "invalid --lines '0'"),
        (("api", None, None, ""), "invalid --grep"),
    ):
        with pytest.raises(BadInput, match=message.replace("(", r"\(")):
            logs.check_query(prod, *args, False)


def test_command_lines_are_argument_lists():
    q = Query("api", None, None, None, False)
    assert logs.logs_command("abc", q) == ["docker", "logs", "--timestamps", "--tail", "100", "abc"]
    q = Query("api", "10m", None, None, True)
    assert logs.logs_command("abc", q) == [
        *("docker", "logs", "--timestamps", "--since", "10m", "--follow", "abc"),
    ]
    q = Query("api", None, None, None, True)
    assert logs.logs_command("abc", q)[3:] == ["--tail", "10", "--follow", "abc"]
    assert logs.list_command("api") == [
        *("docker", "ps", "-a", "--filter", "label=com.docker.compose.service=api", "--format"),
        '{{.ID}} {{.Label "com.docker.compose.project"}} {{.Names}}',
    ]


def test_sources_are_the_services_containers_of_the_apps_projects(prod):
    out = "a1 cerniq cerniq_api_2\nb2 cerniq-blue cerniq-blue_api_1\nc3 other other_api_1\n"
    assert logs.parse_sources("prod-app1", out, logs.projects(prod, "api")) == [
        Source("prod-app1", "b2", "cerniq-blue_api_1"),
        Source("prod-app1", "a1", "cerniq_api_2"),
    ]
    assert logs.projects(prod, "traefik") == {"cerniq-edge"}


def test_timestamps_sort_in_time_order_whatever_their_fraction():
    # Docker trims trailing zeros: as text, ".5Z" sorts after ".45Z"
    assert logs.time_key("2026-12-03T11:00:00.5Z") == ("2026-12-03T11:00:00", "500000000")
    assert logs.time_key("2026-12-03T11:00:00.45Z") < logs.time_key("2026-12-03T11:00:00.5Z")
    assert logs.time_key("not a time") == ("", "")


def test_lines_of_every_host_merge_in_time_order_with_grep():
    one, two = Source("prod-app1", "a", "cerniq_api_1"), Source("prod-app2", "b", "cerniq_api_1")
    first = logs.parse_lines(
        one, "2026-12-03T11:00:00.5Z GET /version\n  continued\n2026-12-03T11:00:02Z GET /health"
    )
    second = logs.parse_lines(two, "2026-12-03T11:00:00.45Z GET /version\r")
    assert [line.render() for line in logs.merge([first, second])] == [
        "prod-app2 cerniq_api_1 2026-12-03T11:00:00.45Z GET /version",
        "prod-app1 cerniq_api_1 2026-12-03T11:00:00.5Z GET /version",
        "prod-app1 cerniq_api_1 2026-12-03T11:00:00.5Z   continued",
        "prod-app1 cerniq_api_1 2026-12-03T11:00:02Z GET /health",
    ]
    assert logs.merge([first, second], grep="/health") == [
        Line(
            ("2026-12-03T11:00:02", "000000000"),
            "prod-app1",
            "cerniq_api_1",
            "2026-12-03T11:00:02Z",
            "GET /health",
        ),
    ]


def test_hosts_are_chosen_by_name(prod):
    assert [h.name for h in logs.choose_hosts(prod, None)] == [h.name for h in prod.app_hosts]
    with pytest.raises(BadInput, match="no app host 'nope' in production"):
        logs.choose_hosts(prod, "nope")
