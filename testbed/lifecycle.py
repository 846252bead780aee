"""Bring the testbed up, report on it, take it down: the only module here that runs commands.

up() first clears whatever a killed run left (namespaces, veths, the bridge, cgroups, processes
in our namespaces), so it is safe to call after a crash; down() leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from cerniq_ops import backup
from cerniq_ops.clients.registry import Registry
from cerniq_ops.errors import TestbedError
from testbed import app_ci, images, machines, plan, sample_app
from testbed.plan import Testbed, TestbedHost

REQUIRED = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "docker-registry": "docker-registry",
    "ssh-keygen": "openssh-client",
    "sudo": "sudo",
    "redis-server": "redis-server",
    "/usr/sbin/haproxy": "haproxy",
    "/usr/sbin/sshd": "openssh-server",
    plan.PG_BIN + "/initdb": "postgresql",
    str(images.BUSYBOX): "busybox-static",
    "debootstrap": "debootstrap",  # the full-machine hosts' image (testbed/machines.py)
    "dpkg-scanpackages": "dpkg-dev",  # their local apt repository
}
COMPOSE_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
COMPOSE_SHIM = """#!/bin/sh
# `docker compose` -> docker-compose (v1): the testbed's stand-in for the compose v2 plugin.
if [ "$1" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion":"0.1.0","Vendor":"cerniq-ops testbed","Version":"1.29.2",'\
'"ShortDescription":"docker-compose v1 shim"}'
  exit 0
fi
shift
exec docker-compose "$@"
"""
PG_PORT = 64032
INITIAL_VERSION = "v1.0.0"
ACCOUNT_FILES = ("passwd", "group", "shadow")  # copied from the machine's /etc, plus deploy
Progress = Callable[[str], None]


def _run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise TestbedError(f"`{' '.join(cmd)}` failed: {(result.stderr or result.stdout).strip()}")
    return result


def _wait(what: str, ready: Callable[[], bool], timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _password() -> str:
    """A generated secret with the characters a URL must encode (`@`, `#`, `/`, `:`), so
    every test proves they survive DATABASE_URL and REDIS_URL."""
    return f"{secrets.token_urlsafe(9)}@#/:{secrets.token_urlsafe(9)}"


def _write_like(path: Path, text: str, model: Path) -> None:
    """Write TEXT to PATH with MODEL's owner and mode (a copy of an /etc file)."""
    st = model.stat()
    path.write_text(text)
    os.chown(path, st.st_uid, st.st_gid)
    path.chmod(st.st_mode & 0o7777)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a generated `.testbed/env` (export NAME=value lines)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


@dataclass
class HostStatus:
    host: TestbedHost
    launcher_pid: int | None
    pid1: int | None
    ssh: bool

    @property
    def up(self) -> bool:
        return bool(self.pid1) and self.ssh


class TestbedManager:
    __test__ = False

    def __init__(self, tb: Testbed, progress: Progress = lambda _: None):
        self.tb = tb
        self.progress = progress
        self.image = Path()  # the full machines' image, once up() has it

    # -- pids --------------------------------------------------------------------------------
    def _pidfile(self, host: TestbedHost) -> Path:
        return self.tb.host_dir(host) / "launcher.pid"

    def _launcher_pid(self, host: TestbedHost) -> int | None:
        try:
            pid = int(self._pidfile(host).read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _pid1(self, host: TestbedHost) -> int | None:
        """The host's PID 1 (the inner script, then sshd) as seen from the root namespace."""
        return machines.first_child(self._launcher_pid(host))

    # -- status ------------------------------------------------------------------------------
    def status(self) -> list[HostStatus]:
        return [
            HostStatus(h, self._launcher_pid(h), self._pid1(h), _port_open(h.ip, 22))
            for h in self.tb.hosts
        ]

    def is_up(self) -> bool:
        serving = not self._machines() or bool(machines.read_pid(self._repo_pidfile))
        return all(s.up for s in self.status()) and self.tb.env_file.exists() and serving

    # -- full machines -------------------------------------------------------------------------
    def _machines(self) -> list[TestbedHost]:
        return [h for h in self.tb.hosts if self.tb.is_machine(h)]

    def _machine(self, host: TestbedHost, image: Path = Path()) -> machines.Machine:
        tb = self.tb
        return machines.Machine(
            host.name, host.ip, tb.netns(host), tb.cgroup_parent(host), tb.host_dir(host), image
        )

    def _booted_as_machine(self, host: TestbedHost) -> bool:
        """Whether HOST was booted as a full machine (also by an earlier, killed run)."""
        return self._machine(host).init.exists()

    @property
    def _repo_pidfile(self) -> Path:
        return self.tb.dir / "repo-server.pid"

    @property
    def _machine_scratch(self) -> Path:
        return self.cache_dir / "machine-view"

    def _prepare_machines(self) -> Path | None:
        """The machine image and the local apt repository (cached machine-wide); the repo."""
        if not self._machines():
            return None
        self.image = machines.ensure_image(progress=self.progress)
        return machines.ensure_repo(self.image, self._machine_scratch, progress=self.progress)

    def _serve_repo(self, repo: Path) -> None:
        tb = self.tb
        machines.serve_repo(repo, tb.bridge_ip, self._repo_pidfile, tb.dir / "repo-server.log")
        _wait(
            "the machines' apt repository",
            lambda: _port_open(tb.bridge_ip, machines.REPO_PORT),
            10,
        )

    def _seed_machine(self, host: TestbedHost) -> None:
        tb = self.tb
        machines.seed(
            self._machine(host, self.image),
            plan.hosts_file(tb, host),
            tb.bridge_ip,
            tb.host_key(host),
            Path(f"{tb.ssh_key}.pub").read_text(),
        )

    # -- up ----------------------------------------------------------------------------------
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise TestbedError("the testbed needs root (network namespaces, mounts, dockerd)")
        missing = sorted(
            {
                pkg
                for tool, pkg in REQUIRED.items()
                if not (shutil.which(tool) or Path(tool).exists())
            }
        )
        if missing:
            raise TestbedError(f"missing packages: {' '.join(missing)}; run `make deps`")

    def up(self) -> bool:
        """Build the testbed; return False when it was already up (nothing changed)."""
        self.preflight()
        if self.is_up():
            self.progress("testbed already up: nothing to do")
            return False
        self.down(quiet=True)
        start = time.monotonic()
        passwords, redis_passwords = self._write_files()
        repo = self._prepare_machines()
        self._network()
        if repo is not None:
            self._serve_repo(repo)
        for host in self.tb.hosts:
            self._launch(host)
        for host in self.tb.hosts:
            self._wait_host(host)
        self._install_compose_shim()
        self._write_known_hosts()
        self.progress(f"hosts up in {time.monotonic() - start:.1f}s")
        registry = self.registry()
        _wait("the registry", lambda: _port_open(*self.tb.registry_address.split(":")), 20)
        self.progress(f"published {images.publish_traefik(registry, 'cerniq', self.cache_dir)}")
        self.progress(f"published {images.publish_busybox(registry, 'cerniq')}")
        for ref in images.publish_app(registry, "cerniq", INITIAL_VERSION):
            self.progress(f"published {ref}")
        self.progress(f"app repository: {self._app_repo()}")
        self.tb.env_file.write_text(plan.env_file(self.tb, passwords, redis_passwords))
        self.tb.env_file.chmod(0o600)
        return True

    def _app_repo(self) -> Path:
        """The app's bare origin after its first release (v1.0.0, published above), a checkout
        of it, and the origin's CI hook (testbed/app_ci.py); the checkout's path."""
        where = self.tb.app_repo_dir
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        origin, checkout = sample_app.make_released_app(where)
        app_ci.install(origin, self.tb.registry_address, "cerniq")
        return checkout

    @property
    def cache_dir(self) -> Path:
        return self.tb.dir / "cache"

    def registry(self) -> Registry:
        return Registry(self.tb.registry_address, scheme="http")

    def _write_files(self) -> tuple[dict[str, str], dict[str, str]]:
        tb = self.tb
        for sub in ("ssh", "inventories", "group_data", "cache"):
            (tb.dir / sub).mkdir(parents=True, exist_ok=True)
        tb.dir.chmod(0o700)
        if not tb.ssh_key.exists():
            _run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "cerniq-testbed",
                    "-f",
                    str(tb.ssh_key),
                ]
            )
        (tb.ssh_dir / "authorized_keys").unlink(missing_ok=True)  # now per host (deploy, root)
        (tb.ssh_config).write_text(plan.ssh_client_config(tb))
        passwords = {env: _password() for env in ("staging", "production")}
        redis_passwords = {env: _password() for env in ("staging", "production")}
        machine = {name: Path(f"/etc/{name}") for name in ACCOUNT_FILES}
        accounts = {name: path.read_text() for name, path in machine.items()}
        deploy_id = plan.free_id(accounts["passwd"], accounts["group"])
        # the testbed's settings use pg_bin_dir = plan.PG_BIN (a unit test holds them equal)
        programs = backup.cluster_owner_programs(SimpleNamespace(pg_bin_dir=plan.PG_BIN))
        for env in ("staging", "production"):
            (tb.dir / "inventories" / f"{env}.py").write_text(plan.inventory_module(tb, env))
            (tb.dir / "group_data" / f"{env}.py").write_text(
                plan.group_data_module(tb, env, images.traefik_version())
            )
        for inside, _ in plan.BIND_DIRS:
            Path(inside).mkdir(parents=True, exist_ok=True)
        for host in tb.hosts:
            hd = tb.host_dir(host)
            key = tb.host_key(host)
            key.parent.mkdir(exist_ok=True)
            if not key.exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
            if tb.is_machine(host):
                hd.mkdir(parents=True, exist_ok=True)
                continue  # seeded in its own upper layer (testbed/machines.py)
            for _, sub in plan.BIND_DIRS:
                (hd / sub).mkdir(parents=True, exist_ok=True)
            (hd / "hosts").write_text(plan.hosts_file(tb, host))
            (hd / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            (hd / "sshd_config").write_text(plan.sshd_config(tb, host))
            shutil.copy(f"{tb.ssh_key}.pub", hd / "authorized_keys")
            texts = {
                "passwd": plan.passwd_file(accounts["passwd"], deploy_id),
                "group": plan.group_file(accounts["group"], deploy_id, plan.deploy_groups(host)),
                "shadow": plan.shadow_file(accounts["shadow"]),
            }
            for name, text in texts.items():
                _write_like(hd / name, text, machine[name])
            sudoers = hd / "sudoers.d"
            sudoers.chmod(0o755)
            rule = plan.sudoers_file(host, programs)
            if rule is not None:
                (sudoers / "cerniq-deploy").write_text(rule)
                (sudoers / "cerniq-deploy").chmod(0o440)
            if host.runs_postgres:
                conf = hd / "redis.conf"
                conf.write_text(plan.redis_conf(host, redis_passwords[host.env or ""]))
                conf.chmod(0o600)
            if host.role == "registry":
                (hd / "registry").mkdir(exist_ok=True)
                (hd / "registry.yml").write_text(plan.registry_config(tb))
            if host.role == "lb":
                (hd / "haproxy.cfg").write_text(plan.haproxy_config(tb, host.env or ""))
            pw = passwords.get(host.env or "", "")
            script = hd / "boot.sh"
            script.write_text(plan.inner_script(tb, host, pw, PG_PORT))
            script.chmod(0o700)
        return passwords, redis_passwords

    def _network(self) -> None:
        tb = self.tb
        _run(["ip", "link", "add", tb.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{tb.bridge_ip}/24", "dev", tb.bridge])
        _run(["ip", "link", "set", tb.bridge, "up"])
        for host in tb.hosts:
            ns, (outer, inner) = tb.netns(host), tb.veth(host)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
            _run(["ip", "link", "set", outer, "master", tb.bridge, "up"])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "-n", ns, "addr", "add", f"{host.ip}/24", "dev", inner])
            _run(["ip", "-n", ns, "link", "set", inner, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _launch(self, host: TestbedHost) -> None:
        if self.tb.is_machine(host):
            self._seed_machine(host)
            machines.boot(self._machine(host, self.image))
            return
        hd = self.tb.host_dir(host)
        log = open(hd / "boot.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.tb.netns(host)}",
                "unshare",
                "--mount",
                "--uts",
                "--ipc",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--propagation",
                "private",
                "bash",
                str(hd / "boot.sh"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._pidfile(host).write_text(str(proc.pid))

    def _wait_host(self, host: TestbedHost) -> None:
        def ready() -> bool:
            if not self._launcher_pid(host):
                tail = (self.tb.host_dir(host) / "boot.log").read_text(errors="replace")[-800:]
                raise TestbedError(f"host {host.name} died while booting: {tail.strip()}")
            if self.tb.is_machine(host):  # bare: no redis until setup installs it
                return _port_open(host.ip, 22)
            return _port_open(host.ip, 22) and (
                not host.runs_postgres or _port_open(host.ip, plan.REDIS_PORT)
            )

        _wait(f"sshd on {host.name}", ready, timeout=90)

    def _install_compose_shim(self) -> None:
        if not COMPOSE_PLUGIN.exists() or COMPOSE_PLUGIN.read_text() != COMPOSE_SHIM:
            COMPOSE_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
            COMPOSE_PLUGIN.write_text(COMPOSE_SHIM)
            COMPOSE_PLUGIN.chmod(0o755)

    def _write_known_hosts(self) -> None:
        lines = []
        for host in self.tb.hosts:
            pub = Path(f"{self.tb.host_key(host)}.pub").read_text().split()
            lines.append(f"{host.name},{host.ip} {pub[0]} {pub[1]}")
        (self.tb.ssh_dir / "known_hosts").write_text("\n".join(lines) + "\n")

    # -- down --------------------------------------------------------------------------------
    def down(self, quiet: bool = False) -> None:
        """Remove every host, namespace, veth, cgroup and the bridge; keep only the cache.
        Every production app host there can be is looked for (a testbed brought up with more
        than this run's count leaves none behind)."""
        tb = self.tb
        every = self._every_host()
        for host in every:
            if self._booted_as_machine(host):
                machines.poweroff(self._machine(host))
            else:
                self._stop_host(host)
        machines.stop_pidfile(self._repo_pidfile)
        machines.unmount_under(self._machine_scratch)  # a repository fill that was killed
        shutil.rmtree(self._machine_scratch, ignore_errors=True)
        for host in every:
            ns, (outer, _) = tb.netns(host), tb.veth(host)
            if Path(f"/run/netns/{ns}").exists():
                self._kill_netns_pids(ns)
                _run(["ip", "netns", "del", ns], check=False)
            if Path(f"/sys/class/net/{outer}").exists():
                _run(["ip", "link", "del", outer], check=False)
            self._remove_cgroups(tb.cgroup_parent(host))
        if Path(f"/sys/class/net/{tb.bridge}").exists():
            _run(["ip", "link", "del", tb.bridge], check=False)
        for sub in ("hosts", "inventories", "group_data", tb.app_repo_dir.name):
            shutil.rmtree(tb.dir / sub, ignore_errors=True)
        tb.env_file.unlink(missing_ok=True)
        for control in tb.ssh_dir.glob("cm-*"):
            control.unlink(missing_ok=True)
        if not quiet:
            self.progress("testbed down")

    def _stop_host(self, host: TestbedHost) -> None:
        pid1, launcher = self._pid1(host), self._launcher_pid(host)
        if pid1:
            inside = (
                "docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1;"
                f" runuser -u postgres -- {plan.PG_BIN}/pg_ctl -D /var/lib/postgresql/data"
                " -m fast -w stop >/dev/null 2>&1;"
                ' pids=$(pidof dockerd docker-registry); [ -n "$pids" ] && kill $pids;'
                " for i in $(seq 1 100); do pidof dockerd containerd >/dev/null || break;"
                " sleep 0.1; done; true"
            )
            _run(
                ["nsenter", "-t", str(pid1), "-m", "-u", "-i", "-n", "-p", "sh", "-c", inside],
                check=False,
                timeout=60,
            )
            os.kill(pid1, signal.SIGTERM)
        if launcher:
            try:
                _wait(f"{host.name} to stop", lambda: not _pid_alive(launcher), timeout=10)
            except TestbedError:
                os.kill(launcher, signal.SIGKILL)  # --kill-child takes the whole host down
                _wait(f"{host.name} to die", lambda: not _pid_alive(launcher), timeout=10)
        self._pidfile(host).unlink(missing_ok=True)

    @staticmethod
    def _kill_netns_pids(ns: str) -> None:
        """Processes still in one of our namespaces (a killed run's leftovers) are ours."""
        pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        if pids:
            _wait(
                f"processes in {ns} to exit",
                lambda: not _run(["ip", "netns", "pids", ns], check=False).stdout.split(),
                10,
            )

    @staticmethod
    def _remove_cgroups(name: str) -> None:
        for root in Path("/sys/fs/cgroup").iterdir():
            top = root / name
            if top.is_dir():
                for d in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if d.is_dir():
                        d.rmdir()
                top.rmdir()

    # -- what is left --------------------------------------------------------------------------
    def _every_host(self) -> tuple[TestbedHost, ...]:
        return replace(self.tb, production_app_hosts=plan.MAX_PRODUCTION_APP_HOSTS).hosts

    def leftovers(self) -> list[str]:
        """Anything of this testbed still on the machine (empty after down())."""
        tb, every = self.tb, self._every_host()
        found = [
            f"netns {tb.netns(h)}" for h in every if Path(f"/run/netns/{tb.netns(h)}").exists()
        ]
        found += [
            f"link {n}"
            for n in [tb.bridge, *(tb.veth(h)[0] for h in every)]
            if Path(f"/sys/class/net/{n}").exists()
        ]
        found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{tb.prefix}-*")]
        mounts = Path("/proc/self/mountinfo").read_text()
        found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(tb.dir) in line]
        launchers = {p for h in every if (p := self._launcher_pid(h))}
        found += [f"process {p}" for p in sorted(launchers)]
        found += [
            f"process {p} (in cgroup {c})"
            for p, c in _processes_in_cgroups(tb.prefix)
            if p not in launchers
        ]
        if pid := machines.read_pid(self._repo_pidfile):
            found.append(f"process {pid} (apt repository server)")
        found += [
            f"files {p}"
            for p in [
                tb.dir / "hosts",
                tb.env_file,
                tb.app_repo_dir,
                self._repo_pidfile,
                self._machine_scratch,
            ]
            if p.exists()
        ]
        return found


def _processes_in_cgroups(prefix: str) -> list[tuple[int, str]]:
    """Processes in a `/<prefix>-*` cgroup of the named systemd hierarchy (full machines)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            lines = (proc / "cgroup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "name=systemd" and path.startswith(f"/{prefix}-"):
                found.append((int(proc.name), path.split("/")[1]))
    return found
