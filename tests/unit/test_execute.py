"""`invoke exec`'s pure parts (cerniq_ops.execute): the command from argv, options, the docker
and ssh command lines (arguments quoted once, never the user's shell text), exit codes."""

from __future__ import annotations

import pytest

from cerniq_ops import execute, settings
from cerniq_ops.errors import BadInput
from cerniq_ops.execute import Outcome

pytestmark = pytest.mark.unit


@pytest.fixture
def prod(monkeypatch):
    monkeypatch.setenv("CERNIQ_TARGET", "real")
    return settings.load("production")


def test_the_command_is_what_follows_the_double_dash_exactly():
    argv = ["invoke", "exec", "--env", "staging", "--", "sh", "-c", "echo 'a b'; exit 3"]
    assert execute.remainder_argv(argv, "sh -c echo 'a b'; exit 3") == [
        *("sh", "-c", "echo 'a b'; exit 3"),
    ]
    assert execute.remainder_argv(["python"], "ls -l '/a b'") == ["ls", "-l", "/a b"]
    assert execute.remainder_argv(["python"], "") == []


def test_options_choose_hosts_and_refuse_bad_input(prod):
    names = [h.name for h in prod.app_hosts]
    every = execute.check(prod, "api", ["ls"], None, False, False, False)
    assert [h.name for h in every.targets] == names
    one = execute.check(prod, "web", ["ls"], None, True, True, True)
    assert [h.name for h in one.targets] == [prod.primary_host.name]
    assert (one.new, one.interactive, one.command) == (True, True, ("ls",))
    for args, message in (
        (("db", ["ls"], None, False), "unknown service 'db'; choose one of: api, web, workers"),
        (("api", [], None, False), "no command: put it after `--`"),
        (("api", ["ls"], names[0], True), "--host and --primary choose the host two ways"),
        (("api", ["ls"], "nope", False), "no app host 'nope' in production"),
    ):
        with pytest.raises(BadInput, match=message.replace("(", r"\(")):
            execute.check(prod, *args, False, False)
    with pytest.raises(BadInput, match="--interactive runs on one host"):
        execute.check(prod, "api", ["sh"], None, False, False, True)


def test_the_container_is_the_active_colors_first(prod):
    out = "g1 cerniq-green\nr1 cerniq\nb1 cerniq-blue\nx1 other\n"
    assert execute.pick_container(out, prod, "blue") == ("b1", "cerniq-blue")
    assert execute.pick_container(out, prod, None) == ("r1", "cerniq")
    assert execute.pick_container("x1 other\n", prod, None) is None
    assert execute.running_command("api") == [
        *("docker", "ps", "--filter", "label=com.docker.compose.service=api"),
        *(
            "--filter",
            "status=running",
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.project"}}',
        ),
    ]


def test_command_lines_quote_each_argument_once(prod):
    argv = execute.exec_argv("abc", ("echo", "$(id)", ";", "a b"))
    assert argv == ["docker", "exec", "abc", "echo", "$(id)", ";", "a b"]
    assert execute.shell_line(argv) == (
        "docker exec abc echo '$(id)' ';' 'a b' 2>&1; echo cerniq-exit:$?"
    )
    assert execute.exec_argv("abc", ("sh",), tty=True) == ["docker", "exec", "-it", "abc", "sh"]
    assert execute.run_argv(prod, "r/cerniq/api:v1.2.0", "/opt/cerniq/.env", ("ls",)) == [
        *("docker", "run", "--rm", "--network", "cerniq", "--env-file", "/opt/cerniq/.env"),
        *("r/cerniq/api:v1.2.0", "ls"),
    ]


def test_ssh_for_interactive_checks_host_keys(prod):
    spec = prod.app_hosts[0]
    argv = execute.ssh_argv(spec, prod, ["docker", "exec", "-it", "abc", "sh", "-c", "a b"])
    assert argv[:7] == ["ssh", "-t", "-p", "22", "-o", "StrictHostKeyChecking=yes", "-o"]
    assert argv[-2:] == [f"deploy@{spec.address}", "docker exec -it abc sh -c 'a b'"]


def test_exit_codes_come_from_the_mark_and_the_worst_wins():
    assert execute.split_exit("v1.2.0\ncerniq-exit:0\n") == ("v1.2.0", 0)
    assert execute.split_exit("no newline at endcerniq-exit:3") == ("no newline at end", 3)
    assert execute.split_exit("cut off") == ("cut off", 255)
    outcomes = [Outcome("a", "-", 0, "ok"), Outcome("b", "-", 3, "x\ny")]
    assert execute.worst(outcomes) == 3 and execute.worst([]) == 0
    assert execute.render(outcomes) == [
        "== a (-): exit 0",
        "   ok",
        "== b (-): exit 3",
        "   x",
        "   y",
    ]


def test_secrets_are_hidden_also_percent_encoded(prod, monkeypatch):
    from cerniq_ops import compose
    from cerniq_ops.output import redact

    password = "p@ss#/:w0rd-e2e"
    monkeypatch.setenv(prod.db_password_env, password)
    prod.hide_secrets()
    url = compose.database_url("c3rn1q", password, "db", 5432, "cerniq")
    assert redact(f"DATABASE_URL={url}") == "DATABASE_URL=postgresql://c3rn1q:***@db:5432/cerniq"
