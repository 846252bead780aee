"""The pyinfra session every procedure uses: inventory from Settings, connect, run, disconnect.

Per-host values reach deploy functions through `host.data` (the inventory's host data plus
the environment's settings under `host.data.cerniq`); `add_op` would pass the same arguments
to every host, so procedures use `add_deploy` with a @deploy function instead.
"""

from __future__ import annotations

import dataclasses
import io
import shlex
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from paramiko import SSHException
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state

from cerniq_ops.errors import StepFailed
from cerniq_ops.settings import HostSpec, Settings


def build_inventory(settings: Settings, hosts: list[HostSpec] | None = None) -> Inventory:
    """A pyinfra Inventory of HOSTS (default: all of the environment), grouped by role."""
    chosen = hosts if hosts is not None else list(settings.hosts)
    shared = {
        "ssh_user": settings.ssh_user,
        "ssh_port": settings.ssh_port,
        "cerniq": {k: v for k, v in dataclasses.asdict(settings).items() if k != "hosts"},
    }
    names = [(h.name, {**shared, **h.data, "roles": list(h.roles)}) for h in chosen]
    groups: dict[str, tuple[list[str], dict]] = {}
    for h in chosen:
        for role in h.roles:
            groups.setdefault(role, ([], {}))[0].append(h.name)
    return Inventory((names, {}), **groups)


@contextmanager
def session(settings: Settings, hosts: list[HostSpec] | None = None) -> Iterator[State]:
    """Connect to HOSTS; StepFailed naming every unreachable host; always disconnect."""
    state = State(build_inventory(settings, hosts), Config(CONNECT_TIMEOUT=10, FAIL_PERCENT=0))
    try:
        with suppress(PyinfraError):  # raised when every host failed: named below
            connect_all(state)
        down = sorted(h.name for h in state.failed_hosts)
        if down:
            raise StepFailed(
                f"cannot connect to {', '.join(down)} ({settings.env}); "
                f"check SSH with `invoke doctor --env {settings.env}`"
            )
        yield state
    finally:
        disconnect_all(state)


def apply(
    settings: Settings, targets: list[HostSpec], deploy_fn, *, dry_run: bool = False, **kwargs
) -> list[str]:
    """Apply a pyinfra @deploy to TARGETS in a session of its own; the changes it makes.

    With dry_run the operations are planned (facts read, commands generated) and listed, and
    nothing runs. Returns lines like `prod-app1: /opt/cerniq/docker-compose.yml`.
    """
    with session(settings, targets) as state:
        add_deploy(state, deploy_fn, **kwargs)
        if dry_run:
            return _planned(state)
        run_ops(state)
        failed = sorted(h.name for h in state.failed_hosts)
        if failed:
            raise StepFailed(f"pyinfra operations failed on {', '.join(failed)}")
        changes = []
        for host in state.inventory.iter_activated_hosts():
            for op_hash, op_data in state.ops[host].items():
                if op_data.operation_meta.did_change():
                    changes.append(f"{host.name}: {_op_name(state, op_hash)}")
        return changes


def _op_name(state: State, op_hash: str) -> str:
    names = state.get_op_meta(op_hash).names
    return ", ".join(sorted(names)) if names else op_hash


def _planned(state: State) -> list[str]:
    planned = []
    with ctx_state.use(state):
        for host in state.inventory.iter_activated_hosts():
            with ctx_host.use(host):
                for op_hash, op_data in state.ops[host].items():
                    if any(True for _ in op_data.command_generator()):
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
        detail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        raise StepFailed(f"{host.name}: `{text[:120]}` failed: {detail[0]}")
    return ok, stdout, stderr


def reconnect(host: Host) -> None:
    """Open HOST's SSH connection again when it dropped (later commands, hooks included, then
    run on a fresh one); StepFailed when the host cannot be reached."""
    client = getattr(getattr(host, "connector", None), "client", None)
    transport = client.get_transport() if client is not None else None
    if client is None or (transport is not None and transport.is_active()):
        return
    host.connected = False
    host.connector.disconnect()
    try:
        host.connect(reason="reconnect", show_errors=False, raise_exceptions=True)
    except PyinfraError as exc:
        raise StepFailed(f"{host.name}: SSH connection lost and not re-opened: {exc}") from None


def write_file(host: Host, path: str, content: str, mode: str = "644") -> None:
    """Write PATH on HOST atomically: upload to a temporary name in the same folder, rename.

    The temporary name does not end in .yml, so a watching Traefik never reads a partial file.
    """
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.tmp-cerniq"
    sh(host, ["mkdir", "-p", folder])
    if not host.put_file(io.BytesIO(content.encode()), temp):
        raise StepFailed(f"{host.name}: could not upload {path}")
    q = shlex.quote
    sh(host, f"chmod {q(mode)} {q(temp)} && mv -f {q(temp)} {q(path)}")


def read_file(host: Host, path: str) -> str | None:
    """The content of PATH on HOST, or None when it does not exist."""
    quoted = shlex.quote(path)
    _, out, _ = sh(host, f"if [ -e {quoted} ]; then echo +; cat {quoted}; else echo -; fi")
    return out[2:] if out.startswith("+") else None
