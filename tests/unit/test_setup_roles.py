"""`invoke setup`'s pure parts: the roles' configuration files, the arguments from settings."""

import dataclasses
import json

import pytest

from cerniq_ops import settings
from cerniq_ops import setup as setup_mod
from cerniq_ops.errors import BadInput
from cerniq_ops.procedure import Context
from deploys import config_files

pytestmark = pytest.mark.unit


@pytest.fixture
def staging(monkeypatch, tmp_path):
    key = tmp_path / "id.pub"
    key.write_text("# the operators' key\nssh-ed25519 AAAAC3Nz cerniq-ops\n")
    monkeypatch.setenv("CERNIQ_STAGING_DB_PASSWORD", "db-secret")
    monkeypatch.setenv("CERNIQ_STAGING_REDIS_PASSWORD", "redis-secret")
    s = settings.load("staging", target="real")
    return dataclasses.replace(s, deploy_public_key_file=str(key))


def test_daemon_json_rotates_logs_keeps_containers_and_trusts_only_an_http_registry():
    assert config_files.docker_daemon_json("10.0.0.2:5000", insecure=True) == (
        "{\n"
        '  "insecure-registries": [\n'
        '    "10.0.0.2:5000"\n'
        "  ],\n"
        '  "live-restore": true,\n'
        '  "log-driver": "json-file",\n'
        '  "log-opts": {\n'
        '    "max-file": "3",\n'
        '    "max-size": "10m"\n'
        "  }\n"
        "}\n"
    )
    assert "insecure-registries" not in json.loads(
        config_files.docker_daemon_json("registry.cerniq.app", insecure=False)
    )


def test_postgres_listens_on_the_db_host_address_and_port():
    assert config_files.postgres_conf("10.0.0.12", 64032) == (
        "# Managed by `invoke setup` (deploys/db_host.py): edits are overwritten.\n"
        "listen_addresses = '10.0.0.12'\n"
        "port = 64032\n"
    )


def test_pg_hba_lets_the_app_user_in_from_exactly_the_clients():
    assert config_files.pg_hba("cerniq", "c3rn1q", ["10.0.0.11/32", "10.0.0.1/32"]) == (
        "# Managed by `invoke setup` (deploys/db_host.py): edits are overwritten.\n"
        "# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
        "local   all       postgres          peer\n"
        "local   all       all               peer\n"
        "host    all       all   127.0.0.1/32  scram-sha-256\n"
        "host    cerniq  c3rn1q  10.0.0.11/32  scram-sha-256\n"
        "host    cerniq  c3rn1q  10.0.0.1/32  scram-sha-256\n"
    )


def test_redis_conf_binds_the_host_requires_the_password_quoted_and_keeps_nothing():
    text = config_files.redis_conf("10.0.0.12", 64039, 'p"w\\x')
    assert text.splitlines() == [
        "# Managed by `invoke setup` (deploys/redis.py): edits are overwritten.",
        "bind 10.0.0.12",
        "port 64039",
        "protected-mode yes",
        'requirepass "p\\"w\\\\x"',
        "daemonize no",
        "supervised systemd",
        "pidfile /run/redis/redis-server.pid",
        "logfile /var/log/redis/redis-server.log",
        "dir /var/lib/redis",
        'save ""',
        "appendonly no",
    ]


def test_role_arguments_come_from_the_settings(staging):
    args = setup_mod.role_arguments(staging)
    assert args["public_keys"] == ["ssh-ed25519 AAAAC3Nz cerniq-ops"]
    assert args["db_password"] == "db-secret" and args["redis_password"] == "redis-secret"
    assert args["db_clients"] == ["staging.cerniq.app"]  # a host name, as pg_hba takes it
    assert args["sudoers"] == (
        "# Managed by `invoke setup` (docs/runbooks/hosts-and-access.md)\n"
        "deploy ALL=(postgres) NOPASSWD: /usr/lib/postgresql/15/bin/pg_dump, "
        "/usr/lib/postgresql/15/bin/pg_restore, /usr/lib/postgresql/15/bin/psql\n"
    )
    assert "image: registry.cerniq.app/cerniq/traefik:" in args["edge_compose"]
    assert args["db_listen"] == ("staging-db.cerniq.app", 64032)
    assert args["redis_listen"] == ("staging-db.cerniq.app", 64039)


def test_the_db_hosts_own_address_and_port_overrides_reach_the_roles(staging):
    hosts = tuple(
        dataclasses.replace(h, data={**h.data, "db_address": "10.0.5.5", "db_port": 5433})
        if "db_servers" in h.roles
        else h
        for h in staging.hosts
    )
    args = setup_mod.role_arguments(dataclasses.replace(staging, hosts=hosts))
    assert args["db_listen"] == ("10.0.5.5", 5433)  # where deploys connect: where it listens


def test_db_clients_are_the_app_hosts_addresses_then_the_setting(staging):
    hosts = tuple(
        dataclasses.replace(h, data={**h.data, "ssh_hostname": "10.1.2.3"})
        if "app_servers" in h.roles
        else h
        for h in staging.hosts
    )
    s = dataclasses.replace(staging, hosts=hosts, db_clients=["192.168.7.0/24"])
    assert setup_mod.db_clients(s) == ["10.1.2.3/32", "192.168.7.0/24"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read deploy_public_key_file"),
        ("# only a comment\n\n", "holds no public key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\n", "holds no public key"),
    ],
)
def test_a_missing_or_wrong_key_file_is_refused_before_connecting(staging, tmp_path, content, why):
    path = tmp_path / "other.pub"
    if content is not None:
        path.write_text(content)
    s = dataclasses.replace(staging, deploy_public_key_file=str(path))
    with pytest.raises(BadInput, match=why):
        setup_mod.validate(Context(s, "setup"))


def test_missing_secrets_and_an_empty_setup_user_are_refused(staging, monkeypatch):
    monkeypatch.delenv("CERNIQ_STAGING_REDIS_PASSWORD")
    with pytest.raises(BadInput, match="CERNIQ_STAGING_REDIS_PASSWORD"):
        setup_mod.validate(Context(staging, "setup"))
    off = dataclasses.replace(staging, setup_user="")
    with pytest.raises(BadInput, match="setup is off for staging"):
        setup_mod.validate(Context(off, "setup"))


def test_the_testbeds_local_repository_holds_every_package_the_roles_install():
    from deploys import db_host, redis
    from testbed import machines

    s = settings.load("staging", target="real")
    assert {*s.docker_packages, *db_host.PACKAGES, *redis.PACKAGES} <= set(machines.SETUP_PACKAGES)


def test_only_the_testbeds_bare_environment_can_be_set_up(tmp_path):
    from testbed import plan

    tb = plan.Testbed(dir=tmp_path, prefix="cqz", net="10.99.0", bare_env="staging")
    bare = plan.group_data_module(tb, "staging")
    assert "setup_user = 'root'\n" in bare
    assert f"deploy_public_key_file = '{tmp_path}/ssh/id_ed25519.pub'\n" in bare
    assert "db_clients = ['10.99.0.1/32']\n" in bare
    assert "compose_command = ['docker-compose']\n" in bare
    assert "setup_user = ''\n" in plan.group_data_module(tb, "production")


# made by PostgreSQL 15 for `ALTER ROLE c3rn1q PASSWORD 'correct horse'`
VERIFIER = (
    "SCRAM-SHA-256$4096:juLJtUjtRel3+GJuGc2bkA==$dE1R7qFx4M1TRcZY47dO0asmchU9NsuBXmuF121//TA="
    ":pN5aAVKkd8MDmQJfpaNxj/IRUSYCvGGSveIc0njmQgQ="
)


def test_a_roles_password_is_set_only_when_the_secret_differs_from_postgresqls_verifier():
    from deploys.facts import scram_matches

    assert scram_matches(VERIFIER, "correct horse")
    assert not scram_matches(VERIFIER, "correct horse!")
    assert not scram_matches(None, "correct horse")  # no role yet: create it with the password
    assert not scram_matches("md5a3556571e93b0d20722ba62be61e8c2d", "correct horse")
    assert not scram_matches("SCRAM-SHA-256$garbage", "correct horse")
