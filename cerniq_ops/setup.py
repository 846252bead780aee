"""`invoke setup`: take an environment's bare hosts to what deploy needs (Kamal's `setup`).

validate -> provision -> start_edge -> check

- provision: deploys/server.py (the roles of each host by its inventory groups) on every host
  at once, logged in as `setup_user` (root, or a user with passwordless sudo); with --dry-run,
  pyinfra plans it and lists each host's changes; nothing runs.
- start_edge: Traefik running on each app host (its network, `up -d`, its API answering).
- check: doctor's checks of the environment, as the deploy user: what deploy needs holds.

Every part converges: a second run changes nothing and says so; a run killed anywhere is
finished by the next one. It takes no deploy lock (the lock lives in app_root, which setup
creates); on live hosts it changes only what differs, and restarts dockerd (live-restore:
containers keep running) or PostgreSQL only when their configuration changed, which the dry
run shows first.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from cerniq_ops import access, compose, doctor, hosts, rollout
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, run, step
from cerniq_ops.settings import Settings

_PUBLIC_KEY = re.compile(r"^(ssh-|ecdsa-|sk-)[\w@.-]+ [A-Za-z0-9+/=]+( .*)?$")


def public_keys(s: Settings) -> list[str]:
    """The deploy user's authorized keys: the lines of `deploy_public_key_file`."""
    path = Path(os.path.expanduser(s.deploy_public_key_file))
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(
            f"cannot read deploy_public_key_file {path}: {exc.strerror or exc}; it holds the "
            f"public key procedures log in as {s.ssh_user} with"
        ) from None
    keys = [line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")]
    if not keys or not all(_PUBLIC_KEY.match(key) for key in keys):
        raise BadInput(f"deploy_public_key_file {path} holds no public key (`ssh-keygen -y`)")
    return keys


def db_clients(s: Settings) -> list[str]:
    """Who may reach the database with the app's password: each app host, then `db_clients`."""
    found = []
    for spec in s.app_hosts:
        try:
            found.append(str(ipaddress.ip_network(spec.address)))  # an address: its /32
        except ValueError:
            found.append(spec.address)  # a host name, as pg_hba takes it
    return [*found, *s.db_clients]


def role_arguments(s: Settings) -> dict[str, Any]:
    """What deploys/server.py takes, from the settings (secrets included: never printed)."""
    from cerniq_ops.backup.commands import cluster_owner_programs

    rule = access.sudo_rule(s.ssh_user, s.db_os_user, cluster_owner_programs(s))
    db = s.db_conninfo()
    return {
        "public_keys": public_keys(s),
        "edge_compose": compose.edge_compose(s),
        "db_password": s.require_secret("db_password_env"),
        "redis_password": s.require_secret("redis_password_env"),
        "db_clients": db_clients(s),
        "sudoers": f"# Managed by `invoke setup` (docs/runbooks/hosts-and-access.md)\n{rule}\n",
        "db_listen": (db["host"], db["port"]),  # where migrations and the app connect
        "redis_listen": s.redis_address(),  # what the app's REDIS_URL names
    }


def _server():
    from deploys.server import server

    return server


@step(offline=True)
def validate(ctx: Context) -> str:
    """The deploy user's key and the secrets the roles write are there."""
    s = ctx.settings
    if not s.setup_user:
        raise BadInput(
            f"setup is off for {s.env} (setting setup_user is empty: its hosts are provisioned "
            "by other means)"
        )
    keys = role_arguments(s)["public_keys"]
    return (
        f"{len(s.hosts)} host(s), logging in as {s.setup_user}; {s.ssh_user} gets "
        f"{len(keys)} key(s) from {s.deploy_public_key_file}"
    )


@step()
def provision(ctx: Context) -> str:
    """Every host's roles at once; each change listed by host."""
    s = ctx.settings
    changes = hosts.apply(
        ctx.state,
        list(s.hosts),
        _server(),
        dry_run=ctx.dry_run,
        **role_arguments(s),
    )
    for line in changes:
        ctx.note(f"{'would change' if ctx.dry_run else 'changed'} {line}")
    ctx.facts["changes"] = len(changes)
    if not changes:
        return "nothing to change: every host already is as its roles say"
    hosts_changed = len({line.split(":", 1)[0] for line in changes})
    return f"{len(changes)} change(s) on {hosts_changed} host(s)"


@step()
def start_edge(ctx: Context) -> str:
    """Traefik running on every app host."""
    s = ctx.settings
    if ctx.dry_run:
        return f"would start Traefik on each of {len(s.app_hosts)} app host(s) where it is not"
    # first: a host a killed run left out of the balancer goes back in
    for line in rollout.put_back_drained(s, ctx.app_hosts):
        ctx.repaired(line)
    started = 0
    for spec in s.app_hosts:
        done = rollout.ensure_edge(ctx.host(spec), s)
        ctx.note(f"{spec.name}: {done}")
        started += done == "traefik started"
    ctx.facts["changes"] = ctx.facts.get("changes", 0) + started
    return f"Traefik started on {started} host(s)" if started else "Traefik already running"


@step()
def check(ctx: Context) -> str:
    """doctor's checks of the environment, logged in as the deploy user."""
    s = ctx.settings
    if ctx.dry_run:
        return f"would run doctor's checks of {s.env} as {s.ssh_user}"
    findings = doctor.check_env(s)
    failed = [f for f in findings if f.failed]
    if failed:
        raise StepFailed(
            "doctor after setup: "
            + "; ".join(f"{f.check} on {f.target}: {f.detail}" for f in failed)
        )
    return doctor.summary(findings)


SETUP = (validate, provision, start_edge, check)


def setup(ctx: Context):
    """Run the setup procedure; returns the Report (ctx.facts['changes']: how many changes)."""
    ctx.locking = False
    ctx.login = ctx.settings.setup_user
    return run(SETUP, ctx)
