"""The configuration files `invoke setup` puts on bare hosts, as text: pure builders, no I/O.

The roles (deploys/docker_host.py, db_host.py, redis.py) upload what these return; their tests
hold the exact text. Values come in as arguments, so the roles work from cerniq-ops' settings
and from the plain pyinfra CLI alike.
"""

from __future__ import annotations

import json

# docker's json-file logs: 3 files of 10 MB per container, then the oldest goes
LOG_MAX_SIZE = "10m"
LOG_MAX_FILES = "3"


def docker_daemon_json(registry: str, insecure: bool) -> str:
    """/etc/docker/daemon.json: log rotation, containers kept running across a dockerd restart
    (live-restore: a setup that changes this file restarts dockerd without stopping the app),
    and REGISTRY as plain HTTP when INSECURE (the testbed's; production's speaks HTTPS)."""
    doc: dict[str, object] = {
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILES},
    }
    if insecure:
        doc["insecure-registries"] = [registry]
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def postgres_conf(address: str, port: int) -> str:
    """conf.d/cerniq.conf of the cluster: listen on the db host's address (the app hosts and
    the operators connect there) and the port of the settings; the rest is Debian's."""
    return (
        "# Managed by `invoke setup` (deploys/db_host.py): edits are overwritten.\n"
        f"listen_addresses = '{address}'\n"
        f"port = {port}\n"
    )


def pg_hba(database: str, user: str, clients: list[str]) -> str:
    """pg_hba.conf: Debian's local rules (peer for the cluster owner's backups and restores),
    and USER to DATABASE with a password from each of CLIENTS (CIDRs: the app hosts, the
    networks operators and CI run migrations from). Nothing else reaches the cluster."""
    lines = [
        "# Managed by `invoke setup` (deploys/db_host.py): edits are overwritten.",
        "# TYPE  DATABASE  USER  ADDRESS  METHOD",
        "local   all       postgres          peer",
        "local   all       all               peer",
        "host    all       all   127.0.0.1/32  scram-sha-256",
    ]
    lines += [f"host    {database}  {user}  {cidr}  scram-sha-256" for cidr in clients]
    return "\n".join(lines) + "\n"


def redis_conf(address: str, port: int, password: str) -> str:
    """/etc/redis/redis.conf for Debian's redis-server unit: the db host's address, a password,
    no persistence (the app keeps sessions and queues there; PostgreSQL is the record)."""
    return "\n".join(
        [
            "# Managed by `invoke setup` (deploys/redis.py): edits are overwritten.",
            f"bind {address}",
            f"port {port}",
            "protected-mode yes",
            f"requirepass {redis_quote(password)}",
            "daemonize no",
            "supervised systemd",
            "pidfile /run/redis/redis-server.pid",
            "logfile /var/log/redis/redis-server.log",
            "dir /var/lib/redis",
            'save ""',
            "appendonly no",
            "",
        ]
    )


def redis_quote(value: str) -> str:
    """A redis.conf string argument (double-quoted, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
