"""What the testbed is made of, as data and text: pure builders, no I/O.

Every host is a network namespace on one bridge, with its own sshd (PID 1 of its own PID
namespace) and, by role, its own dockerd, registry or PostgreSQL cluster; or, for the app and
db hosts of `bare_env`, a bare full machine with systemd as PID 1 (testbed/machines.py).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from deploys.config_files import redis_quote

REGISTRY_PORT = 5000
PUBLIC_PORT = 80  # each environment's load balancer
APP_PORT = 64000  # group_data/all.py health_port: each app host's Traefik entrypoint
REDIS_PORT = 64039  # group_data/all.py redis_port
PG_BIN = "/usr/lib/postgresql/15/bin"  # group_data/all.py pg_bin_dir
DEPLOY_USER = "deploy"  # group_data/all.py ssh_user: what every procedure connects as
DEPLOY_HOME = f"/home/{DEPLOY_USER}"
FIRST_ID = 2000  # the deploy user's uid/gid: the first id from here free on the machine
PRODUCTION_APP_LAST_OCTETS = (21, 22, 24, 25, 26, 27, 28, 29)  # .23 is prod-db
MAX_PRODUCTION_APP_HOSTS = len(PRODUCTION_APP_LAST_OCTETS)
ENVIRONMENTS = ("staging", "production")


@dataclass(frozen=True)
class TestbedHost:
    name: str  # hostname inside the testbed and inventory name
    ip: str
    env: str | None  # staging / production, or None for shared hosts
    role: str  # registry | lb | app | db
    __test__ = False

    @property
    def runs_docker(self) -> bool:
        return self.role == "app"

    @property
    def runs_postgres(self) -> bool:
        return self.role == "db"


@dataclass(frozen=True)
class Testbed:
    """The layout of one testbed; `prefix` and `net` let several coexist on one machine."""

    dir: Path
    prefix: str = "cq"
    net: str = "10.77.0"  # a /24: .1 is the bridge in the root namespace
    production_app_hosts: int = 2  # prod-app1..N (CERNIQ_TESTBED_PRODUCTION_APP_HOSTS)
    # this environment's app and db hosts are bare full machines for `invoke setup` to
    # provision (testbed/machines.py) instead of ready-made namespace hosts
    bare_env: str | None = None  # CERNIQ_TESTBED_BARE_ENV
    __test__ = False

    def __post_init__(self) -> None:
        if not 1 <= self.production_app_hosts <= MAX_PRODUCTION_APP_HOSTS:
            raise ValueError(
                f"production app hosts: 1 to {MAX_PRODUCTION_APP_HOSTS}, "
                f"not {self.production_app_hosts}"
            )
        if self.bare_env not in (None, *ENVIRONMENTS):
            raise ValueError(
                f"bare environment: one of {', '.join(ENVIRONMENTS)}, not {self.bare_env!r}"
            )

    @classmethod
    def from_env(cls, directory: Path) -> Testbed:
        return cls(
            dir=directory,
            prefix=os.environ.get("CERNIQ_TESTBED_PREFIX", "cq"),
            net=os.environ.get("CERNIQ_TESTBED_NET", "10.77.0"),
            production_app_hosts=int(os.environ.get("CERNIQ_TESTBED_PRODUCTION_APP_HOSTS", "2")),
            bare_env=os.environ.get("CERNIQ_TESTBED_BARE_ENV") or None,
        )

    @property
    def hosts(self) -> tuple[TestbedHost, ...]:
        """prod-app1 and 2 at .21 and .22, prod-db at .23, prod-app3 onwards from .24."""
        n = self.net
        app = [
            TestbedHost(f"prod-app{i}", f"{n}.{last}", "production", "app")
            for i, last in enumerate(PRODUCTION_APP_LAST_OCTETS[: self.production_app_hosts], 1)
        ]
        return (
            TestbedHost("registry", f"{n}.2", None, "registry"),
            TestbedHost("staging-lb", f"{n}.10", "staging", "lb"),
            TestbedHost("staging-app1", f"{n}.11", "staging", "app"),
            TestbedHost("staging-db", f"{n}.12", "staging", "db"),
            TestbedHost("prod-lb", f"{n}.20", "production", "lb"),
            *app[:2],
            TestbedHost("prod-db", f"{n}.23", "production", "db"),
            *app[2:],
        )

    def is_machine(self, host: TestbedHost) -> bool:
        """Whether HOST boots as a bare full machine: an app or db host of `bare_env`."""
        return host.env is not None and host.env == self.bare_env and host.role in ("app", "db")

    def host(self, name: str) -> TestbedHost:
        return next(h for h in self.hosts if h.name == name)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br0"

    @property
    def bridge_ip(self) -> str:
        return f"{self.net}.1"

    def netns(self, host: TestbedHost) -> str:
        return f"{self.prefix}-{host.name}"

    def veth(self, host: TestbedHost) -> tuple[str, str]:
        """(root side, host side) interface names; at most 15 characters each."""
        last = host.ip.rsplit(".", 1)[1]
        return f"{self.prefix}v{last}", f"{self.prefix}h{last}"

    def cgroup_parent(self, host: TestbedHost) -> str:
        return f"{self.prefix}-{host.name}"

    def balancer(self, env: str) -> TestbedHost:
        return next(h for h in self.hosts if h.env == env and h.role == "lb")

    def public_url(self, env: str) -> str:
        """ENV's public URL: its load balancer (HAProxy) in front of its app hosts."""
        return f"http://{self.balancer(env).ip}:{PUBLIC_PORT}"

    @property
    def registry_address(self) -> str:
        return f"{self.host('registry').ip}:{REGISTRY_PORT}"

    # -- paths -----------------------------------------------------------------------------
    def host_dir(self, host: TestbedHost) -> Path:
        return self.dir / "hosts" / host.name

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    def host_key(self, host: TestbedHost) -> Path:
        """The host's SSH key: kept across down/up, so clients never see a changed host key."""
        return self.ssh_dir / "host-keys" / f"{host.name}_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def env_file(self) -> Path:
        return self.dir / "env"

    @property
    def app_repo_dir(self) -> Path:
        """The app's repository: `origin.git` (bare, its CI hook: testbed/app_ci.py) and `app`,
        a checkout of it (what CERNIQ_APP_REPO points at)."""
        return self.dir / "app-repo"

    @property
    def secrets_file(self) -> Path:
        return self.dir / "secrets.env"


# Folders bound over the host's own view of the root filesystem: (inside path, host subdir)
BIND_DIRS = (
    ("/run", "run"),
    ("/opt/cerniq", "opt-cerniq"),
    ("/backup", "backup"),
    ("/root", "root"),
    ("/home", "home"),
    ("/etc/sudoers.d", "sudoers.d"),
    ("/var/lib/postgresql", "pgdata"),
    ("/var/lib/docker", "docker"),
    ("/var/log/cerniq-host", "log"),
)
# The host's own accounts: the machine's plus `deploy` (never a user on the machine itself)
BIND_FILES = (
    ("/etc/hosts", "hosts"),
    ("/etc/resolv.conf", "resolv.conf"),
    ("/etc/passwd", "passwd"),
    ("/etc/group", "group"),
    ("/etc/shadow", "shadow"),
)


# -- the deploy user ----------------------------------------------------------------------------
def free_id(passwd: str, group: str, start: int = FIRST_ID) -> int:
    """The first id from START used neither as a uid in PASSWD nor as a gid in GROUP."""
    used = {int(f[2]) for f in _records(passwd) if f[2].isdigit()}
    used |= {int(f[2]) for f in _records(group) if f[2].isdigit()}
    n = start
    while n in used:
        n += 1
    return n


def _records(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line.count(":") >= 2]


def _without(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line and line.split(":", 1)[0] != name]


def passwd_file(machine: str, uid: int) -> str:
    """The machine's /etc/passwd plus the deploy user (uid = gid = UID, bash, home /home)."""
    line = f"{DEPLOY_USER}:x:{uid}:{uid}:cerniq-ops deploy user:{DEPLOY_HOME}:/bin/bash"
    return "\n".join([*_without(machine, DEPLOY_USER), line]) + "\n"


def group_file(machine: str, gid: int, groups: tuple[str, ...] = ()) -> str:
    """The machine's /etc/group plus deploy's own group, with deploy added to GROUPS."""
    out = []
    for line in _without(machine, DEPLOY_USER):
        fields = line.split(":")
        if len(fields) == 4 and fields[0] in groups:
            members = [m for m in fields[3].split(",") if m and m != DEPLOY_USER]
            fields[3] = ",".join([*members, DEPLOY_USER])
            line = ":".join(fields)
        out.append(line)
    out.append(f"{DEPLOY_USER}:x:{gid}:")
    return "\n".join(out) + "\n"


def shadow_file(machine: str) -> str:
    """The machine's /etc/shadow plus deploy with no password (`*`: key login only, not locked)."""
    line = f"{DEPLOY_USER}:*:19000:0:99999:7:::"
    return "\n".join([*_without(machine, DEPLOY_USER), line]) + "\n"


def deploy_groups(host: TestbedHost) -> tuple[str, ...]:
    """The groups deploy is in on HOST: docker where a dockerd runs (its socket's group)."""
    return ("docker",) if host.runs_docker else ()


def sudoers_file(host: TestbedHost, programs: list[str], owner: str = "postgres") -> str | None:
    """/etc/sudoers.d/cerniq-deploy of HOST: the narrow rule on db hosts, none elsewhere."""
    from cerniq_ops.access import sudo_rule

    if not host.runs_postgres:
        return None
    return (
        "# Generated by `invoke testbed.up` (docs/runbooks/hosts-and-access.md)\n"
        + sudo_rule(DEPLOY_USER, owner, programs)
        + "\n"
    )


def redis_conf(host: TestbedHost, password: str) -> str:
    """redis-server's configuration on a db host: the host address, a password, no disk."""
    return "\n".join(
        [
            f"bind {host.ip}",
            f"port {REDIS_PORT}",
            "protected-mode yes",
            f"requirepass {redis_quote(password)}",
            "daemonize yes",
            "pidfile /run/redis/redis.pid",
            "logfile /run/redis/redis.log",
            "dir /run/redis",
            'save ""',
            "appendonly no",
            "",
        ]
    )


def hosts_file(tb: Testbed, host: TestbedHost) -> str:
    lines = ["127.0.0.1 localhost", f"{host.ip} {host.name}"]
    lines += [f"{h.ip} {h.name}" for h in tb.hosts if h != host]
    return "\n".join(lines) + "\n"


def sshd_config(tb: Testbed, host: TestbedHost) -> str:
    return "\n".join(
        [
            f"ListenAddress {host.ip}",
            "Port 22",
            f"HostKey {tb.host_key(host)}",
            "PidFile /run/sshd.pid",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]
    )


def ssh_client_config(tb: Testbed) -> str:
    """An ssh_config for ssh, testinfra and humans: host aliases, key, known hosts, ControlPath.

    `<host>` logs in as deploy, as every procedure does; `<host>-root` logs in as root, for
    tests that break a host on purpose (stop a daemon, corrupt a file) and for humans.
    """
    common = [
        f"  IdentityFile {tb.ssh_key}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {tb.ssh_dir / 'known_hosts'}",
        "  StrictHostKeyChecking yes",
        "  ControlMaster auto",
        f"  ControlPath {tb.ssh_dir}/cm-%C",
        "  ControlPersist 120",
        "  ConnectTimeout 5",
        "  LogLevel ERROR",
    ]
    out: list[str] = []
    for h in tb.hosts:
        out += [f"Host {h.name} {h.ip}", f"  HostName {h.ip}", f"  User {DEPLOY_USER}", *common, ""]
        out += [f"Host {h.name}-root", f"  HostName {h.ip}", "  User root", *common, ""]
    return "\n".join(out)


def postgres_conf_args(host: TestbedHost, port: int) -> str:
    return (
        f"-c listen_addresses={host.ip} -c port={port} "
        "-c unix_socket_directories=/run/postgresql -c fsync=off -c full_page_writes=off"
    )


def registry_config(tb: Testbed) -> str:
    host = tb.host("registry")
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {tb.host_dir(host) / 'registry'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {host.ip}:{REGISTRY_PORT}\n"
    )


def haproxy_config(tb: Testbed, env: str) -> str:
    """ENV's load balancer: round robin over its app hosts' Traefik, each checked on /health
    every second (out after 2 misses, back after 2 successes); a request that fails in a way
    that is safe to replay (refused or reset connection, empty answer: `all-retryable-errors`,
    which HAProxy applies only to idempotent requests) is retried on another host, as a
    production balancer in front of the hosts does."""
    lb = tb.balancer(env)
    app = [h for h in tb.hosts if h.env == env and h.role == "app"]
    servers = "".join(f"  server {h.name} {h.ip}:{APP_PORT} check\n" for h in app)
    return (
        "global\n"
        "  maxconn 4096\n"
        "defaults\n"
        "  mode http\n"
        "  option http-keep-alive\n"
        "  timeout connect 2s\n"
        "  timeout client 30s\n"
        "  timeout server 30s\n"
        "  retries 3\n"
        "  retry-on all-retryable-errors\n"
        "  option redispatch 1\n"
        "frontend public\n"
        f"  bind {lb.ip}:{PUBLIC_PORT}\n"
        "  default_backend app\n"
        "backend app\n"
        "  balance roundrobin\n"
        "  option httpchk GET /health\n"
        "  http-check expect status 200\n"
        "  default-server inter 1s fall 2 rise 2\n"
        f"{servers}"
    )


def inner_script(tb: Testbed, host: TestbedHost, db_password: str, pg_port: int) -> str:
    """The script a host boots with, inside its own mount/UTS/IPC/PID namespaces.

    It binds the per-host folders and account files, gives deploy its home, key and folders,
    starts the role's daemons, then becomes sshd (PID 1).
    """
    hd = tb.host_dir(host)
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"HD={q(str(hd))}",
        *[f'mount --bind "$HD/{sub}" {inside}' for inside, sub in BIND_DIRS],
        *[f'mount --bind "$HD/{sub}" {inside}' for inside, sub in BIND_FILES],
        "mount -t tmpfs -o size=64m tmpfs /dev/shm",
        "mkdir -p /run/sshd /run/postgresql && chown postgres:postgres /run/postgresql",
        # 711: the cluster owner's commands (sudo -u postgres) start in deploy's home
        f"install -d -m 711 -o {DEPLOY_USER} -g {DEPLOY_USER} {DEPLOY_HOME}",
        f"install -d -m 700 -o {DEPLOY_USER} -g {DEPLOY_USER} {DEPLOY_HOME}/.ssh",
        f'install -m 600 -o {DEPLOY_USER} -g {DEPLOY_USER} "$HD/authorized_keys"'
        f" {DEPLOY_HOME}/.ssh/authorized_keys",
        'install -d -m 700 /root/.ssh && install -m 600 "$HD/authorized_keys" /root/.ssh/',
        f"chown {DEPLOY_USER}:{DEPLOY_USER} /opt/cerniq /backup && chmod 755 /opt/cerniq",
        "chmod 700 /backup",
        f"hostname {q(host.name)}",
        "ip link set lo up",
        "log=/var/log/cerniq-host",
    ]
    if host.runs_docker:
        lines += [
            "dockerd --cgroup-parent "
            + q("/" + tb.cgroup_parent(host))
            + f" --dns {host.ip} --insecure-registry {tb.registry_address}"
            + ' --storage-driver overlay2 >"$log/dockerd.log" 2>&1 &',
        ]
    if host.role == "registry":
        lines += [
            '/usr/bin/docker-registry serve "$HD/registry.yml" >"$log/registry.log" 2>&1 &',
        ]
    if host.role == "lb":
        lines += ['/usr/sbin/haproxy -q -D -f "$HD/haproxy.cfg" -p /run/haproxy.pid']
    if host.runs_postgres:
        pgdata = "/var/lib/postgresql/data"
        statements = (
            f"CREATE ROLE c3rn1q LOGIN CREATEDB PASSWORD {_sql_literal(db_password)}",
            "CREATE DATABASE cerniq OWNER c3rn1q",
        )
        psql_args = " ".join(f"-c {q(sql)}" for sql in statements)
        lines += [
            "chown postgres:postgres /var/lib/postgresql",
            'touch "$log/postgres.log" && chown postgres "$log/postgres.log"',
            f"if [ ! -s {pgdata}/PG_VERSION ]; then",
            f"  runuser -u postgres -- {PG_BIN}/initdb -D {pgdata} -A trust -U postgres >/dev/null",
            f"  echo 'host all all 0.0.0.0/0 scram-sha-256' >> {pgdata}/pg_hba.conf",
            "  FIRST=1",
            "fi",
            f"rm -f {pgdata}/postmaster.pid",
            f"runuser -u postgres -- {PG_BIN}/pg_ctl -D {pgdata} -w -t 60"
            f' -l "$log/postgres.log" -o {q(postgres_conf_args(host, pg_port))} start >/dev/null',
            'if [ -n "${FIRST:-}" ]; then',
            f"  runuser -u postgres -- psql -q -h /run/postgresql -p {pg_port} -d postgres"
            f" {psql_args}",
            "fi",
            "install -d -m 700 -o redis -g redis /run/redis",
            'install -m 600 -o redis -g redis "$HD/redis.conf" /run/redis/redis.conf',
            "runuser -u redis -- /usr/bin/redis-server /run/redis/redis.conf",
        ]
    if host.runs_docker:
        lines += [
            "for i in $(seq 1 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done",
            "docker version >/dev/null",
        ]
    lines += [
        'exec /usr/sbin/sshd -D -f "$HD/sshd_config" -E "$log/sshd.log"',
        "",
    ]
    return "\n".join(lines)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def inventory_module(tb: Testbed, env: str) -> str:
    """The generated pyinfra inventory of ENV on the testbed (same groups as inventories/)."""
    common = {
        "ssh_user": DEPLOY_USER,
        "ssh_key": str(tb.ssh_key),
        "ssh_known_hosts_file": str(tb.ssh_dir / "known_hosts"),
        "ssh_strict_host_key_checking": "yes",
    }
    app = [h for h in tb.hosts if h.env == env and h.role == "app"]
    db = [h for h in tb.hosts if h.env == env and h.role == "db"]

    def entry(h: TestbedHost, **extra: object) -> str:
        return repr((h.name, {"ssh_hostname": h.ip, **common, **extra}))

    return (
        f'"""Generated by `invoke testbed.up`: the testbed\'s {env} hosts. Do not edit."""\n\n'
        + "app_servers = [\n"
        + "".join(f"    {entry(h)},\n" for h in app)
        + "]\n"
        + "db_servers = [\n"
        + "".join(f"    {entry(h, db_primary=True)},\n" for h in db)
        + "]\n"
    )


def group_data_module(tb: Testbed, env: str, traefik_version: str = "v3.7.15") -> str:
    values = {
        "registry": tb.registry_address,
        "traefik_version": traefik_version,
        "public_url": tb.public_url(env),
        "db_password_env": f"CERNIQ_TESTBED_{env.upper()}_DB_PASSWORD",
        "redis_password_env": f"CERNIQ_TESTBED_{env.upper()}_REDIS_PASSWORD",
    }
    if env == tb.bare_env:  # bare machines: `invoke setup` provisions them as root
        values |= {
            "setup_user": "root",
            "deploy_public_key_file": f"{tb.ssh_key}.pub",
            "db_clients": [f"{tb.bridge_ip}/32"],  # migrations run from this machine
            "compose_command": ["docker-compose"],  # Debian's compose (v1), no plugin shim
        }
    else:  # namespace hosts share this machine's /etc: setup there would change the machine
        values["setup_user"] = ""
    body = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    return f'"""Generated by `invoke testbed.up`: {env} on the testbed. Do not edit."""\n\n{body}'


def env_file(
    tb: Testbed, passwords: dict[str, str], redis_passwords: dict[str, str] | None = None
) -> str:
    """Shell lines that point cerniq-ops at this testbed (`. .testbed/env`)."""
    lines = [
        "# Generated by `invoke testbed.up`: source it to aim cerniq-ops at the testbed.",
        "export CERNIQ_TARGET=testbed",
        f"export CERNIQ_TESTBED_DIR={shlex.quote(str(tb.dir))}",
        f"export CERNIQ_TESTBED_PREFIX={shlex.quote(tb.prefix)}",
        f"export CERNIQ_TESTBED_NET={shlex.quote(tb.net)}",
        f"export CERNIQ_TESTBED_PRODUCTION_APP_HOSTS={tb.production_app_hosts}",
        f"export CERNIQ_APP_REPO={shlex.quote(str(tb.app_repo_dir / 'app'))}",
    ]
    if tb.bare_env:
        lines.append(f"export CERNIQ_TESTBED_BARE_ENV={shlex.quote(tb.bare_env)}")
    lines += [
        f"export CERNIQ_TESTBED_{env.upper()}_DB_PASSWORD={shlex.quote(pw)}"
        for env, pw in passwords.items()
    ]
    lines += [
        f"export CERNIQ_TESTBED_{env.upper()}_REDIS_PASSWORD={shlex.quote(pw)}"
        for env, pw in (redis_passwords or {}).items()
    ]
    return "\n".join(lines) + "\n"
