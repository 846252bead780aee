"""The pyinfra session every procedure uses: inventory from Settings, connect, run, disconnect.

Per-host values reach deploy functions through `host.data` (the inventory's host data plus
the environment's settings under `host.data.cerniq`); `add_op` would pass the same arguments
to every host, so procedures use `add_deploy` with a @deploy function instead.

Host keys are checked strictly on every connection: a key not in the known-hosts file (the
setting ssh_known_hosts_file, or the host's `ssh_known_hosts_file` data) or a changed one is
refused, naming the host; `invoke doctor --trust` records unknown keys after showing them.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import secrets
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from gevent.pool import Pool
from paramiko import SSHException
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.operations import run_ops
from pyinfra.api.state import BaseStateCallback, StateHostMeta, StateHostResults
from pyinfra.connectors import util as pyinfra_connector_util
from pyinfra.context import ctx_host, ctx_state

from cerniq_ops.errors import StepFailed
from cerniq_ops.settings import HostSpec, Settings
from deploys import operations


def _never_prompt(prompt: str = "") -> str:
    """pyinfra asks for a sudo password on a terminal when a command prints `sudo: a password
    is required`; a procedure never prompts: that is a missing sudo rule, said in one line."""
    where = prompt.replace("sudo password:", "").strip(" []:") or "a host"
    raise StepFailed(
        f"sudo on {where} asks for a password: the deploy user's sudo rule is missing or "
        "incomplete; run `invoke doctor` (docs/runbooks/hosts-and-access.md)"
    )


pyinfra_connector_util.getpass = _never_prompt  # type: ignore[assignment]

if not os.environ.get("CERNIQ_DEBUG"):  # pyinfra's own warnings would repeat our one line
    logging.getLogger("pyinfra").addHandler(logging.NullHandler())
    logging.getLogger("pyinfra").propagate = False


def build_inventory(
    settings: Settings, hosts: list[HostSpec] | None = None, user: str | None = None
) -> Inventory:
    """A pyinfra Inventory of HOSTS (default: all of the environment), grouped by role; USER
    logs in instead of the ssh user of the settings and the inventory (`invoke setup`)."""
    chosen = hosts if hosts is not None else list(settings.hosts)
    shared = {
        "ssh_user": settings.ssh_user,
        "ssh_port": settings.ssh_port,
        "ssh_known_hosts_file": settings.known_hosts_file,
        "cerniq": {k: v for k, v in dataclasses.asdict(settings).items() if k != "hosts"},
    }
    strict = {"ssh_strict_host_key_checking": "yes"}  # never accept-new, whatever the inventory
    if user is not None:
        strict["ssh_user"] = user
    names = [(h.name, {**shared, **h.data, **strict, "roles": list(h.roles)}) for h in chosen]
    groups: dict[str, tuple[list[str], dict]] = {}
    for h in chosen:
        for role in h.roles:
            groups.setdefault(role, ([], {}))[0].append(h.name)
    return Inventory((names, {}), **groups)


def connect_failure(env: str, name: str, error: str, known_hosts: str) -> str:
    """Why connecting to host NAME failed, in one line, from pyinfra's connect error text."""
    trust = f"`invoke doctor --env {env} --trust`"
    if "host key error" in error or "does not match" in error:
        return (
            f"host key of {name} does not match {known_hosts}: refusing to connect (a rebuilt "
            f"host, or someone in between); compare its fingerprint with the host's owner, then "
            f"remove the old key (`ssh-keygen -R <address> -f {known_hosts}`) and run {trust}"
        )
    if "No host key" in error:
        return (
            f"host key of {name} unknown (not in {known_hosts}): refusing to connect; check "
            f"its fingerprint with the host's owner and record it with {trust}"
        )
    return f"cannot connect to {name} ({env}): {error}"


class _ConnectErrors(BaseStateCallback):
    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def host_connect_error(self, state, host, error):  # type: ignore[override]
        self.errors[host.name] = str(error.args[0] if getattr(error, "args", None) else error)


@contextmanager
def session(
    settings: Settings,
    hosts: list[HostSpec] | None = None,
    user: str | None = None,
) -> Iterator[State]:
    """Connect to HOSTS (as USER: see build_inventory; a USER other than root runs every
    operation with sudo); StepFailed naming every unreachable host; always disconnect."""
    config = Config(CONNECT_TIMEOUT=10, FAIL_PERCENT=0, SUDO=user not in (None, "root"))
    state = State(build_inventory(settings, hosts, user), config)
    errors = _ConnectErrors()
    state.add_callback_handler(errors)
    try:
        with suppress(PyinfraError):  # raised when every host failed: named below
            connect_all(state)
        down = sorted(h.name for h in state.failed_hosts)
        if down:
            keys = {
                n: connect_failure(settings.env, n, e, _known_hosts(state, n))
                for n, e in errors.errors.items()
                if n in down and ("host key" in e or "No host key" in e)
            }
            if keys:
                raise StepFailed("; ".join(keys[n] for n in sorted(keys)))
            raise StepFailed(
                f"cannot connect to {', '.join(down)} ({settings.env}); "
                f"check SSH with `invoke doctor --env {settings.env}`"
            )
        yield state
    finally:
        disconnect_all(state)


def _known_hosts(state: State, name: str) -> str:
    return str(state.inventory.get_host(name).data.get("ssh_known_hosts_file") or "known_hosts")


_PYINFRA_STATE = threading.Lock()


def apply(
    state: State, targets: list[HostSpec], deploy_fn, *, dry_run: bool = False, **kwargs
) -> list[str]:
    """Apply a pyinfra @deploy to TARGETS over STATE, the procedure's session (its SSH
    connections: nothing new is opened, a dropped one is re-opened); the changes it makes.

    With dry_run the operations are planned (facts read, commands generated) and listed, and
    nothing runs; else each operation reads its facts when it runs, in order (as `pyinfra
    -y`), where a fact can depend on what an earlier operation changed (psql on the port a
    config file just written names). Returns lines like `prod-app1: /opt/cerniq/docker-compose.yml`.
    One apply at a time in the process: pyinfra keeps the current State in a process-wide
    context (`pyinfra.context.ctx_state` is not thread-local), so hosts rolled at once apply
    their files in turn and run their commands (`sh`) at the same time.
    """
    errors = _ErrorLines()
    with _PYINFRA_STATE, errors.collected():
        chosen = [state.inventory.get_host(spec.name) for spec in targets]
        if not chosen:
            return []
        changes: list[str] = []
        for attempt in (1, 2):
            for host in chosen:
                reconnect(host)
            planned, failed = _run_once(state, chosen, deploy_fn, kwargs, dry_run)
            if not dry_run:
                changes += [line for line in _changes(state, chosen) if line not in changes]
            if not failed:
                return planned if dry_run else sorted(changes, key=lambda line: line.split(":")[0])
            if attempt == 1 and errors.channel_not_opened(failed):
                # an SSH connection went as a command's channel opened (that command never
                # ran): the operations, idempotent, run once more over new connections
                for host in failed:
                    reconnect(host, force=True)
                continue
            names = ", ".join(sorted(h.name for h in failed))
            raise StepFailed(f"pyinfra operations failed on {names}{errors.why()}")
    raise AssertionError("unreachable")  # pragma: no cover


def _run_once(
    state: State, chosen: list[Host], deploy_fn, kwargs: dict, dry_run: bool
) -> tuple[list[str], list[Host]]:
    """One run (or plan) of DEPLOY_FN on CHOSEN: (planned changes, hosts that failed)."""
    _new_run(state, chosen, plan=dry_run)
    planned: list[str] = []
    try:
        _add_deploy(state, chosen, deploy_fn, kwargs)
        planned = _planned(state, chosen) if dry_run else (run_ops(state) or [])
    except PyinfraError as exc:  # a host failed (FAIL_PERCENT=0): named by the caller
        if not state.failed_hosts.intersection(chosen):
            raise StepFailed(f"pyinfra: {exc}") from None
    finally:
        state.active_hosts = state.activated_hosts - state.failed_hosts
    return planned, [h for h in chosen if h in state.failed_hosts]


def _changes(state: State, chosen: list[Host]) -> list[str]:
    """`host: operation` for each operation that ran and changed something."""
    return [
        f"{host.name}: {_op_name(state, op_hash)}"
        for host in sorted(chosen, key=lambda h: h.name)
        for op_hash, op_data in state.ops[host].items()
        if op_data.operation_meta.is_complete() and op_data.operation_meta.did_change()
    ]


def _new_run(state: State, chosen: list[Host], *, plan: bool) -> None:
    """Make STATE ready for another run of operations on CHOSEN: pyinfra's State holds one
    deploy, so what the last apply added (operations, their order, results, a host it failed)
    goes, and the connections stay. Greenlet pools of this thread's own: a wave's hosts apply
    from their threads."""
    state.is_executing = False  # else pyinfra runs each operation as it is added
    state.check_for_changes = plan
    state.op_meta = {}
    state.ops = {host: {} for host in state.inventory}
    state.meta = {host: StateHostMeta() for host in state.inventory}
    state.results = {host: StateHostResults() for host in state.inventory}
    for host in state.inventory:
        host.op_hash_order = []
    state.failed_hosts -= set(chosen)
    state.active_hosts = set(chosen)
    state.pool = Pool(len(chosen))
    state.fact_pool = Pool(len(chosen))


def _add_deploy(state: State, chosen: list[Host], deploy_fn, kwargs: dict) -> None:
    """pyinfra's add_deploy, with hosts of different groups kept apart. In API mode pyinfra
    tells an operation by its place in each host's sequence, so hosts whose roles differ (an
    app host, the db host) would share the names and order of unrelated operations; a loop
    position per kind of host (its groups) keeps each kind's operations its own."""
    kinds = sorted({tuple(sorted(map(str, h.groups))) for h in chosen})
    with ctx_state.use(state):
        for host in chosen:
            host.loop_position = [kinds.index(tuple(sorted(map(str, host.groups))))]
            try:
                with ctx_host.use(host):
                    deploy_fn(**kwargs)
            finally:
                host.loop_position = []


class _ErrorLines(logging.Handler):
    """pyinfra's error lines of one apply (`[host] Error: could not load fact: ...`), so a
    failure says what failed where (pyinfra's own output is silenced, see above)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())
        self.lines.append(" ".join(text.split()))

    @contextmanager
    def collected(self) -> Iterator[None]:
        loggers = [logging.getLogger(name) for name in ("pyinfra", "paramiko")]  # paramiko: why
        for logger in loggers:  # a connection went (`Socket exception: ...`)
            logger.addHandler(self)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(self)

    def channel_not_opened(self, failed: list[Host]) -> bool:
        """Whether each of FAILED stopped as a command's channel would not open (a host
        stops at its first error: the fact or command that failed names it)."""
        return all(
            any(
                line.startswith(f"[{h.name}]") and CHANNEL_NOT_OPENED in line for line in self.lines
            )
            for h in failed
        )

    def why(self) -> str:
        return f": {'; '.join(dict.fromkeys(self.lines[-3:]))[:400]}" if self.lines else ""


def _op_name(state: State, op_hash: str) -> str:
    names = state.get_op_meta(op_hash).names
    return ", ".join(sorted(names)) if names else op_hash


def _planned(state: State, chosen: list[Host]) -> list[str]:
    """Each host's planned changes, hosts by name (pyinfra activates them in the order their
    connections came up, which differs from run to run); an operation whose `_if` does not
    hold is not planned (the roles' conditions use deploys.data.changed, true in plans)."""
    planned = []
    with ctx_state.use(state):
        for host in sorted(chosen, key=lambda h: h.name):
            with ctx_host.use(host):
                for op_hash, op_data in state.ops[host].items():
                    conditions = op_data.global_arguments.get("_if") or []
                    if not isinstance(conditions, list):
                        conditions = [conditions]
                    if all(c() for c in conditions) and any(
                        True for _ in op_data.command_generator()
                    ):
                        planned.append(f"{host.name}: {_op_name(state, op_hash)}")
    return planned


def sh(
    host: Host, command: list[str] | str, *, check: bool = True, timeout: int = 600
) -> tuple[bool, str, str]:
    """Run COMMAND on HOST; (succeeded, stdout, stderr). A list is quoted here, the one place.

    With check=True a non-zero exit is a StepFailed naming the host and the command.
    """
    text = command if isinstance(command, str) else shlex.join(command)
    reconnect(host)
    try:
        try:
            ok, out = host.run_shell_command(StringCommand(text), _timeout=timeout)
        except SSHException as exc:
            if str(exc) != CHANNEL_NOT_OPENED:
                raise
            # the connection went as the command's channel opened: the command never ran, so
            # it runs once more over a new connection
            reconnect(host, force=True)
            ok, out = host.run_shell_command(StringCommand(text), _timeout=timeout)
    except TimeoutError:
        raise StepFailed(f"{host.name}: `{text[:120]}` did not finish within {timeout}s") from None
    except (OSError, EOFError, SSHException) as exc:
        raise StepFailed(
            f"{host.name}: SSH connection lost running `{text[:120]}`: {type(exc).__name__}: {exc}"
        ) from None
    stdout = "\n".join(out.stdout_lines)
    stderr = "\n".join(out.stderr_lines)
    if check and not ok:
        raise StepFailed(f"{host.name}: `{text[:120]}` failed: {failure_detail(stderr or stdout)}")
    return ok, stdout, stderr


def failure_detail(output: str) -> str:
    """The line of a failed command's OUTPUT that says why: the last one naming an error
    (compose ends with `Encountered errors while bringing up the project.` after the reason),
    else the last line."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"(ERROR|Error|error)\b", line)]
    return (errors or lines or ["no output"])[-1]


CHANNEL_NOT_OPENED = "Unable to open channel."  # paramiko: the channel never opened


def reconnect(host: Host, *, force: bool = False) -> None:
    """Open HOST's SSH connection again when it dropped (later commands, hooks included, then
    run on a fresh one), or FORCE; StepFailed when the host cannot be reached."""
    client = getattr(getattr(host, "connector", None), "client", None)
    transport = client.get_transport() if client is not None else None
    if client is None or (not force and transport is not None and transport.is_active()):
        return
    host.connected = False
    host.connector.disconnect()
    try:
        host.connect(reason="reconnect", show_errors=False, raise_exceptions=True)
    except PyinfraError as exc:
        raise StepFailed(f"{host.name}: SSH connection lost and not re-opened: {exc}") from None


def write_file(host: Host, path: str, content: str, mode: str = "644") -> None:
    """Write PATH on HOST atomically, as deploys.operations.atomic_file does (the same
    commands, run now: a switch's marker and route files are written at a chosen moment).

    The upload fills a temporary name in the same folder (not ending in .yml, so a watching
    Traefik never reads a partial file), created empty and private first (mode 600, never an
    existing file), so a secret is never readable by others; it gets MODE, then the rename.
    """
    temp = operations.temp_path(path)
    sh(host, operations.private_temp_command(path.rsplit("/", 1)[0], temp))
    if not host.put_file(io.BytesIO(content.encode()), temp):
        raise StepFailed(f"{host.name}: could not upload {path}")
    sh(host, operations.rename_command(temp, path, mode))


def create_file(host: Host, path: str, content: str, mode: str = "644") -> bool:
    """Write PATH on HOST only if it does not exist yet (False then, PATH untouched): for a
    record named by its time, which two runs may pick in the same second. The upload fills a
    private temporary name of its own, as write_file's does."""
    temp = f"{operations.temp_path(path)}-{secrets.token_hex(4)}"
    sh(host, operations.private_temp_command(path.rsplit("/", 1)[0], temp))
    if not host.put_file(io.BytesIO(content.encode()), temp):
        sh(host, ["rm", "-f", temp], check=False)
        raise StepFailed(f"{host.name}: could not upload {path}")
    _, out, _ = sh(host, operations.link_new_command(temp, path, mode))
    return out.strip() == "created"


def read_file(host: Host, path: str) -> str | None:
    """The content of PATH on HOST, or None when it does not exist."""
    quoted = shlex.quote(path)
    _, out, _ = sh(host, f"if [ -e {quoted} ]; then echo +; cat {quoted}; else echo -; fi")
    return out[2:] if out.startswith("+") else None
