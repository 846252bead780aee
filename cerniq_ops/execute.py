"""`invoke exec`: a command in a service's container on every app host (Kamal's `app exec`).

The command comes as arguments (what follows `--` on the command line), is quoted here with
shlex.join, and reaches the host's shell only as `docker exec <id> <arg> <arg>...`: never as
shell text of the user's. On each chosen host (all app hosts, `--host H`, or `--primary`; at
once, a thread and SSH connection per host): a running container of the service (the active
color's first on blue-green), or with `--new` a one-off `docker run --rm` of the version in
current-version with the app's env file, on the app's network. Each host's output (stdout and
stderr together) is printed under its name, hosts in inventory order; the exit code is the
worst one. `--interactive` (one host, a terminal) hands the terminal to `ssh -t` running
`docker exec -it`. Production needs the typed confirmation. An audit line names the command
on each host where it ran.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cerniq_ops import audit, compose, hosts
from cerniq_ops.confirm import require
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.settings import HostSpec, Settings

EXIT_MARK = "cerniq-exit:"
EXIT_RE = re.compile(rf"^(.*){EXIT_MARK}(\d+)$")
COLORS = ("blue", "green")


@dataclass(frozen=True)
class Request:
    service: str
    command: tuple[str, ...]
    targets: tuple[HostSpec, ...]
    new: bool
    interactive: bool


@dataclass(frozen=True)
class Outcome:
    host: str
    where: str  # the container (id and project) or `new <image>`
    code: int
    output: str


# -- pure ------------------------------------------------------------------------------------
def remainder_argv(argv: list[str], remainder: str) -> list[str]:
    """The command after `--`: from the process' own ARGV, exactly as given (invoke's
    `c.remainder` is those words joined by spaces, which loses their quoting), else REMAINDER
    split like a shell would."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return shlex.split(remainder) if remainder.strip() else []


def check(
    s: Settings,
    service: str,
    command: list[str],
    host: str | None,
    primary: bool,
    new: bool,
    interactive: bool,
) -> Request:
    """The options, checked (BadInput before anything connects)."""
    if service not in s.services:
        raise BadInput(f"unknown service {service!r}; choose one of: {', '.join(s.services)}")
    if not command:
        raise BadInput("no command: put it after `--`, e.g. `invoke exec --env staging -- ls /`")
    if host and primary:
        raise BadInput("--host and --primary choose the host two ways: pass one of them")
    names = [h.name for h in s.app_hosts]
    if host is not None and host not in names:
        raise BadInput(f"no app host '{host}' in {s.env}; app hosts: {', '.join(names)}")
    if primary:
        targets = [s.primary_host]
    elif host is not None:
        targets = [h for h in s.app_hosts if h.name == host]
    else:
        targets = list(s.app_hosts)
    if interactive and len(targets) != 1:
        raise BadInput("--interactive runs on one host: pass --host H or --primary")
    return Request(service, tuple(command), tuple(targets), new, interactive)


def running_command(service: str) -> list[str]:
    fmt = '{{.ID}} {{.Label "com.docker.compose.project"}}'
    return [
        *("docker", "ps", "--filter", f"label=com.docker.compose.service={service}"),
        *("--filter", "status=running", "--format", fmt),
    ]


def pick_container(output: str, s: Settings, active: str | None) -> tuple[str, str] | None:
    """(id, project) of the container to run in: the active color's, else the rolling
    deploy's, else the other color's; None when the service runs nowhere here."""
    order = [f"{s.compose_project}-{active}"] if active in COLORS else []
    order += [s.compose_project, *(f"{s.compose_project}-{c}" for c in COLORS)]
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in order:
            found.setdefault(parts[1], parts[0])
    for project in order:
        if project in found:
            return found[project], project
    return None


def exec_argv(container: str, command: tuple[str, ...], tty: bool = False) -> list[str]:
    return ["docker", "exec", *(["-it"] if tty else []), container, *command]


def run_argv(s: Settings, image: str, env_file: str, command: tuple[str, ...]) -> list[str]:
    """A one-off container of IMAGE with the app's environment, removed when it ends."""
    return [
        *("docker", "run", "--rm", "--network", compose.network_name(s)),
        *("--env-file", env_file, image, *command),
    ]


def shell_line(argv: list[str]) -> str:
    """ARGV quoted (the one place), its stderr joined to stdout, then its exit code."""
    return f"{shlex.join(argv)} 2>&1; echo {EXIT_MARK}$?"


def split_exit(output: str) -> tuple[str, int]:
    """(output, exit code) from what shell_line printed; a missing mark is exit 255 (the
    connection or shell went away)."""
    lines = output.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        m = EXIT_RE.match(lines[-1])
        if m:
            head = m.group(1)
            body = lines[:-1] + ([head] if head else [])
            return "\n".join(body), int(m.group(2))
    return "\n".join(lines), 255


def ssh_argv(spec: HostSpec, s: Settings, remote: list[str]) -> list[str]:
    """`ssh -t` to SPEC as the deploy user, host key checked, running REMOTE (quoted)."""
    data = spec.data
    argv = ["ssh", "-t", "-p", str(data.get("ssh_port", s.ssh_port))]
    argv += ["-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", f"UserKnownHostsFile={data.get('ssh_known_hosts_file', s.known_hosts_file)}"]
    if data.get("ssh_key"):
        argv += ["-i", str(data["ssh_key"]), "-o", "IdentitiesOnly=yes"]
    user = data.get("ssh_user", s.ssh_user)
    return [*argv, f"{user}@{spec.address}", shlex.join(remote)]


def worst(outcomes: list[Outcome]) -> int:
    return max((o.code for o in outcomes), default=0)


def render(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for o in outcomes:
        lines.append(f"== {o.host} ({o.where}): exit {o.code}")
        lines += [f"   {line}" for line in o.output.splitlines()]
    return lines


# -- on hosts --------------------------------------------------------------------------------
def confirm(s: Settings, given: str | None) -> str:
    if s.confirm_phrase:
        return require(s.confirm_phrase, given, f"{s.env.upper()} EXEC")
    return "no confirmation needed"


def target_on(host, s: Settings, r: Request) -> tuple[list[str], str]:
    """The docker command line for HOST and a description of where it runs."""
    active = (hosts.read_file(host, f"{s.app_root}/active-env") or "").strip() or None
    if r.new:
        version = (hosts.read_file(host, f"{s.app_root}/current-version") or "").strip()
        if not version:
            raise StepFailed(f"{host.name}: no current-version: no version to run --new from")
        image = s.image(r.service, version)
        env_file = f"{s.app_root}/.env" + (f".{active}" if active in COLORS else "")
        return run_argv(s, image, env_file, r.command), f"new {r.service}:{version}"
    _, out, _ = hosts.sh(host, running_command(r.service))
    picked = pick_container(out, s, active)
    if picked is None:
        raise StepFailed(f"{host.name}: no running {r.service} container (try --new)")
    return exec_argv(picked[0], r.command, r.interactive), f"{picked[1]} {picked[0][:12]}"


def run_on(host, s: Settings, r: Request) -> Outcome:
    try:
        argv, where = target_on(host, s, r)
    except StepFailed as exc:
        return Outcome(host.name, "-", 255, str(exc))
    _, out, err = hosts.sh(host, shell_line(argv), check=False, timeout=3600)
    output, code = split_exit(out)
    if err.strip():
        output = "\n".join(p for p in (output, err) if p)
    _record(host, s, r, code)
    return Outcome(host.name, where, code, output)


def _record(host, s: Settings, r: Request, code: int | None) -> None:
    """The audit line of the command on HOST (CODE None: an interactive session began)."""
    result = "started" if code is None else ("ok" if code == 0 else "failed")
    how = "interactive" if code is None else f"exit {code}"
    line = audit.audit_line(
        env=s.env,
        procedure="exec",
        step=r.service,
        result=result,
        who=audit.actor(),
        version=None,
        detail=f"{how}: {shlex.join(r.command)[:200]}",
    )
    with contextlib.suppress(StepFailed):  # the command ran: its output matters more
        audit.append(host, s, line)


def run_all(state, s: Settings, r: Request) -> list[Outcome]:
    chosen = [state.inventory.get_host(spec.name) for spec in r.targets]
    with ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="exec") as pool:
        return list(pool.map(lambda h: run_on(h, s, r), chosen))


def interactive_argv(state, s: Settings, r: Request) -> list[str]:
    """The `ssh -t` command line that runs `docker exec -it` on the one chosen host."""
    if not sys.stdin.isatty():
        raise BadInput("--interactive needs a terminal (stdin is not one)")
    spec = r.targets[0]
    host = state.inventory.get_host(spec.name)
    argv, _ = target_on(host, s, r)
    if r.new:  # docker run: keep stdin open with a terminal
        argv = [*argv[:3], "-it", *argv[3:]]
    _record(host, s, r, None)
    return ssh_argv(spec, s, argv)
