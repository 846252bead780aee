"""Every role a host of an environment has, by its inventory groups: what `invoke setup` runs.

    app_servers: docker_host, the deploy user (in the docker group), edge
    db_servers:  the deploy user, db_host, redis

Also a pyinfra deploy file: `pyinfra inventories/staging.py deploys/server.py` (add `--dry` to
plan) runs the same roles with the same arguments, built from the environment's settings.
"""

import pyinfra
from pyinfra import host

from deploys.data import environment
from deploys.db_host import db_host
from deploys.deploy_user import deploy_user
from deploys.docker_host import docker_host
from deploys.edge import edge
from deploys.redis import redis


def server(
    public_keys: list[str],
    edge_compose: str,
    db_password: str,
    redis_password: str,
    db_clients: list[str],
    sudoers: str,
    db_listen: tuple[str, int],
    redis_listen: tuple[str, int],
):
    app, db = "app_servers" in host.groups, "db_servers" in host.groups
    if app:
        docker_host()  # first: the docker group the deploy user joins comes with the package
    deploy_user(public_keys, groups=["docker"] if app else [])
    if app:
        edge(edge_compose)
    if db:
        db_host(db_password, db_clients, sudoers, db_listen)
        redis(redis_password, redis_listen)


if pyinfra.is_cli:  # run as a deploy file by pyinfra's own CLI
    from cerniq_ops import settings
    from cerniq_ops.setup import role_arguments

    server(**role_arguments(settings.load(environment())))
