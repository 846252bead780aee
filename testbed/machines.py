"""Full-machine testbed hosts: a Debian 12 image booted with systemd as the host's PID 1.

A machine is what `invoke setup` provisions: a bare Debian server (systemd, sshd, iproute2),
root's key login and nothing of ours. Its root filesystem is an overlay: the debootstrapped
image (machine-wide cache, read-only lower layer, shared by every machine and every testbed)
under a per-host upper layer that holds the host's identity, seeded before the first boot.
Its apt installs from a flat local repository served on the testbed bridge (the hosts have no
route out), holding exactly the packages setup installs plus their missing dependencies.

The recipe is DESIGN.md's "Hosts as full machines". The builders (debootstrap line, init script,
launcher, apt line, sshd drop-in) are pure; the functions after them run commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cerniq_ops.errors import TestbedError

CACHE = Path("/var/cache/cerniq-testbed")  # machine-wide: CI runs from fresh clones here
SUITE = "bookworm"
# what a bare server has; setup installs everything else (docker, postgres, redis, sudo)
IMAGE_INCLUDE = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "procps",
    "netbase",
)
# what the setup roles install (deploys/): the local repository holds these and what they need
# (group_data/all.py docker_packages, deploys/db_host.py, deploys/redis.py; a unit test holds it)
SETUP_PACKAGES = (
    "docker.io",
    "docker-compose",
    "curl",
    "postgresql",
    "redis-server",
    "sudo",
    "jq",
)
REPO_PORT = 64090  # the local apt repository, on the testbed bridge address (64080: Traefik API)
# units a bare server in a testbed has no use for: periodic jobs that would wake every machine
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-tmpfiles-clean.timer",
)
MEMORY_LIMIT = 1536 * 1024 * 1024  # per machine (docker + postgres + redis + the app fit)
CPU_SHARES = 512  # half the weight of the machine's own processes: other testbeds run here
# the machine's cgroups (v1 controllers, the named systemd hierarchy, unified cgroup2)
CgroupMount = tuple[str, str, str]  # (folder under /sys/fs/cgroup, fstype, options)
DEFAULT_CGROUPS: tuple[CgroupMount, ...] = (
    *((c, "cgroup", c) for c in ("cpu", "cpuacct", "cpuset", "memory", "devices")),
    *((c, "cgroup", c) for c in ("freezer", "blkio", "pids")),
    ("systemd", "cgroup", "none,name=systemd"),
    ("unified", "cgroup2", "rw"),
)
# /dev of a machine: its own nodes, never a bind of the machine's (a host's getty once
# chowned the machine's /dev/null through such a bind); no /dev/console
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
    ("fuse", 10, 229),
    ("net/tun", 10, 200),
)
STDIO = ("stdin", "stdout", "stderr")
Progress = Callable[[str], None]


# -- what a machine is ------------------------------------------------------------------------
@dataclass(frozen=True)
class Machine:
    """One full-machine host: its names and its folders on the machine (under HOST_DIR)."""

    name: str  # hostname
    ip: str
    netns: str  # the network namespace it runs in
    cgroup: str  # its cgroup, in every hierarchy
    host_dir: Path
    image: Path

    @property
    def upper(self) -> Path:
        return self.host_dir / "upper"

    @property
    def work(self) -> Path:
        return self.host_dir / "work"

    @property
    def root(self) -> Path:
        """Where INIT mounts the overlay (inside the host's mount namespace only)."""
        return self.host_dir / "root"

    @property
    def docker(self) -> Path:
        """/var/lib/docker: plain ext4 (on overlay, dockerd falls back to `vfs`)."""
        return self.host_dir / "docker"

    @property
    def init(self) -> Path:
        return self.host_dir / "init.sh"

    @property
    def pidfile(self) -> Path:
        """The launcher's PID; its one child is the machine's PID 1 (systemd)."""
        return self.host_dir / "launcher.pid"

    @property
    def log(self) -> Path:
        return self.host_dir / "boot.log"


# -- pure builders ------------------------------------------------------------------------------
def debian_sources(text: str, suite: str = SUITE) -> list[tuple[str, str]]:
    """(URI, suite) of the Debian archive entries for SUITE in an apt sources text, one-line
    (`deb URI SUITE main`) or deb822 (`URIs:`/`Suites:`) format; main component only."""
    found: list[tuple[str, str]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("deb "):
                words = re.sub(r"\[[^\]]*\]", " ", line[4:]).split()
                if len(words) >= 3 and "main" in words[2:]:
                    found.append((words[0], words[1]))
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and "main" in fields.get("components", ""):
            uris, suites = fields.get("uris", "").split(), fields.get("suites", "").split()
            found += [(u, s) for u in uris for s in suites]
    ours = (suite, f"{suite}-updates", f"{suite}-security")
    return [(u.rstrip("/"), s) for u, s in found if s in ours]


def image_sources_list(sources: list[tuple[str, str]]) -> str:
    """The image's own /etc/apt/sources.list (used to build it and to fill the repository;
    hidden in the hosts): the machine's Debian archive entries."""
    return "".join(f"deb {uri} {suite} main\n" for uri, suite in sources)


def mirror(sources: list[tuple[str, str]], suite: str = SUITE) -> str:
    """The mirror debootstrap fetches SUITE from: the one the machine's apt sources name."""
    for uri, s in sources:
        if s == suite:
            return uri
    raise TestbedError(f"no Debian {suite} entry in the machine's apt sources; add one")


def debootstrap_argv(target: Path, mirror_uri: str, include: tuple[str, ...] = IMAGE_INCLUDE):
    return [
        "debootstrap",
        "--variant=minbase",
        "--components=main",
        f"--include={','.join(include)}",
        SUITE,
        str(target),
        mirror_uri,
    ]


def image_key(include: tuple[str, ...] = IMAGE_INCLUDE, sources: str = "") -> str:
    """The cache key of an image: what goes into it (a change rebuilds)."""
    recipe = "\n".join(
        [SUITE, *include, sources, *MASKED_UNITS, journald_conf(), APT_CONF, "recipe 1"]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def repo_key(image: Path, packages: tuple[str, ...] = SETUP_PACKAGES) -> str:
    """The cache key of a repository: the image it completes and the packages it holds."""
    return hashlib.sha256("\n".join([image.name, *packages]).encode()).hexdigest()[:12]


APT_CONF = (
    "// the testbed's mirror may be a dated snapshot\n"
    'Acquire::Check-Valid-Until "false";\n'
    'Acquire::Check-Date "false";\n'
)


def journald_conf() -> str:
    """The journal in memory, small: many machines share one disk and one RAM."""
    return "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n"


def sources_list(bridge_ip: str, port: int = REPO_PORT) -> str:
    """A host's /etc/apt/sources.list: the testbed's flat local repository only."""
    return f"deb [trusted=yes] http://{bridge_ip}:{port}/ ./\n"


def sshd_dropin() -> str:
    """/etc/ssh/sshd_config.d/cerniq-testbed.conf: keys only, root by key, the seeded host key
    only (the image has none), enough sessions for pyinfra's fan-out."""
    return "\n".join(
        [
            "# Generated by the cerniq-ops testbed (testbed/machines.py)",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UseDNS no",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
            "",
        ]
    )


def resolv_conf(bridge_ip: str) -> str:
    """Pointing at the bridge: nothing answers there, so lookups fail at once instead of
    waiting for an unreachable server (no route out)."""
    return f"nameserver {bridge_ip}\n"


def init_script(m: Machine, cgroups: tuple[CgroupMount, ...] = DEFAULT_CGROUPS) -> str:
    """INIT: run by the launcher in the host's new mount/UTS/IPC/PID/cgroup namespaces; builds
    the machine's root (overlay, proc, sys, cgroups, /dev, /run, /tmp, docker's folder), pivots
    into it and becomes systemd."""
    q = shlex.quote
    r = '"$R"'
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"R={q(str(m.root))}",
        f"mount -t overlay overlay -o lowerdir={q(str(m.image))},upperdir={q(str(m.upper))},"
        f"workdir={q(str(m.work))} {r}",
        f"mount -t proc -o nosuid,nodev,noexec proc {r}/proc",
        # /proc/sys read-only but /proc/sys/net writable (dockerd sets ip_forward there)
        f"mount --bind {r}/proc/sys {r}/proc/sys",
        f"mount --bind {r}/proc/sys/net {r}/proc/sys/net",
        f"mount -o remount,bind,ro {r}/proc/sys",
        f"mount -o remount,bind,rw {r}/proc/sys/net",
        f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys",
        # inside the cgroup namespace each hierarchy shows only this host's subtree, writable
        f"mount -t tmpfs -o mode=755,nosuid,nodev,noexec,size=1m tmpfs {r}/sys/fs/cgroup",
    ]
    for folder, fstype, options in cgroups:
        where = f"{r}/sys/fs/cgroup/{folder}"
        lines.append(f"mkdir {where} && mount -t {fstype} -o {options} cgroup {where}")
    lines += [
        f"mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs {r}/dev",
        f"mkdir {r}/dev/net {r}/dev/pts {r}/dev/shm {r}/dev/mqueue",
        *[f"mknod -m 666 {r}/dev/{node} c {major} {minor}" for node, major, minor in DEVICES],
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts {r}/dev/pts",
        f"ln -s pts/ptmx {r}/dev/ptmx",
        f"ln -s /dev/null {r}/dev/kmsg",
        f"ln -s /proc/self/fd {r}/dev/fd",
        *[f"ln -s /proc/self/fd/{i} {r}/dev/{n}" for i, n in enumerate(STDIO)],
        f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {r}/dev/shm",
        f"mount -t tmpfs -o mode=755,nosuid,nodev tmpfs {r}/run",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {r}/tmp",
        f"mkdir -p {r}/var/lib/docker",
        f"mount --bind {q(str(m.docker))} {r}/var/lib/docker",
        f"cd {r}",
        "pivot_root . .",
        "umount -l .",
        "cd /",
        "exec /usr/bin/env -i container=cerniq-testbed SYSTEMD_GETTY_AUTO=0"
        " /lib/systemd/systemd --system",
        "",
    ]
    return "\n".join(lines)


# joins its own cgroup in every hierarchy (limited in memory and CPU weight), then starts INIT
_LAUNCH = r"""set -e
for d in /sys/fs/cgroup/*/; do
  c="$d$1"; mkdir -p "$c"
  if [ -f "${d}cpuset.cpus" ]; then
    cat "${d}cpuset.cpus" > "$c/cpuset.cpus"; cat "${d}cpuset.mems" > "$c/cpuset.mems"
  fi
  [ ! -f "$c/memory.limit_in_bytes" ] || echo "$2" > "$c/memory.limit_in_bytes"
  [ ! -f "$c/cpu.shares" ] || echo "$3" > "$c/cpu.shares"
  echo $$ > "$c/cgroup.procs"
done
shift 3
exec "$@"
"""


def launcher_argv(m: Machine) -> list[str]:
    """The launcher: its own cgroups, then `nsenter --net` + `unshare ... --cgroup --fork
    --kill-child` INIT; INIT (then systemd) is its one child (killing it takes the host down)."""
    return [
        "sh",
        "-c",
        _LAUNCH,
        "cerniq-machine",
        m.cgroup,
        str(MEMORY_LIMIT),
        str(CPU_SHARES),
        "nsenter",
        f"--net=/run/netns/{m.netns}",
        "unshare",
        "--mount",
        "--uts",
        "--ipc",
        "--pid",
        "--cgroup",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "bash",
        str(m.init),
    ]


def repo_server_argv(repo: Path, ip: str, port: int = REPO_PORT) -> list[str]:
    return [
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        ip,
        "--directory",
        str(repo),
        str(port),
    ]


def identity_files(m: Machine, hosts: str, bridge_ip: str, authorized_key: str) -> dict[str, str]:
    """The host's identity, written into its upper layer before the first boot (path inside
    the machine -> text); the host key is copied beside these."""
    files = {
        "/etc/hostname": f"{m.name}\n",
        "/etc/hosts": hosts,
        "/etc/resolv.conf": resolv_conf(bridge_ip),
        "/etc/machine-id": uuid.uuid5(uuid.NAMESPACE_DNS, f"{m.netns}.cerniq").hex + "\n",
        "/etc/apt/sources.list": sources_list(bridge_ip),
        "/etc/ssh/sshd_config.d/cerniq-testbed.conf": sshd_dropin(),
        "/root/.ssh/authorized_keys": authorized_key,
    }
    return files


# -- running commands ---------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-1500:]
        raise TestbedError(f"`{shlex.join(cmd)[:200]}` failed: {tail}")
    return result


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache entry (testbeds of other engineers share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below FOLDER in this mount namespace, deepest first."""
    prefix = str(folder).rstrip("/")
    points = [
        line.split()[4].replace("\\040", " ")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]
    found = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    return sorted(set(found), key=len, reverse=True)


def unmount_under(folder: Path) -> None:
    for point in mounts_under(folder):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_stale(cache: Path, pattern: str) -> None:
    for stale in cache.glob(pattern):
        unmount_under(stale)
        shutil.rmtree(stale, ignore_errors=True)


def _chroot(root: Path, *cmd: str, timeout: float = 900) -> None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
    }
    _run(["chroot", str(root), *cmd], timeout=timeout, env=env)


def machine_sources() -> list[tuple[str, str]]:
    texts = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    text = "\n\n".join(p.read_text() for p in texts if p.is_file())
    return debian_sources(text)


def ensure_image(cache: Path = CACHE, progress: Progress = lambda _: None) -> Path:
    """The debootstrapped image, built once per recipe into CACHE (a temp folder renamed into
    place: a killed build never leaves a half image); its path."""
    sources = machine_sources()
    listing = image_sources_list(sources)
    image = cache / f"image-{image_key(IMAGE_INCLUDE, listing)}"
    if image.is_dir():
        return image
    with _locked(cache / "image.lock"):
        if image.is_dir():
            return image
        _remove_stale(cache, "image-*.tmp")
        start = time.monotonic()
        progress(f"building the machine image {image.name} (debootstrap {SUITE}, once)")
        tmp = cache / f"{image.name}.tmp"
        try:
            _run(debootstrap_argv(tmp, mirror(sources)), timeout=1800)
            _customize(tmp, listing)
        finally:
            unmount_under(tmp)
        tmp.rename(image)
        progress(f"machine image built in {time.monotonic() - start:.0f}s")
    return image


def _customize(root: Path, listing: str) -> None:
    """Upgraded from the machine's sources, cleaned, with no host keys, machine id or
    periodic jobs; the journal small and in memory."""
    (root / "etc/apt/sources.list").write_text(listing)
    (root / "etc/apt/apt.conf.d/99cerniq-testbed").write_text(APT_CONF)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"  # nothing starts in the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _run(["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        _chroot(root, "apt-get", "-q", "update")
        _chroot(root, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "upgrade")
        _chroot(root, "apt-get", "clean")
    finally:
        _run(["umount", str(root / "proc")])
    policy.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/resolv.conf").unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    dropin = root / "etc/systemd/journald.conf.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "cerniq-testbed.conf").write_text(journald_conf())


def ensure_repo(
    image: Path,
    scratch: Path,
    packages: tuple[str, ...] = SETUP_PACKAGES,
    cache: Path = CACHE,
    progress: Progress = lambda _: None,
) -> Path:
    """The flat apt repository completing IMAGE with PACKAGES, cached in CACHE; its path.
    SCRATCH (an ext4 folder of the testbed's) holds the throw-away view while it fills."""
    repo = cache / f"repo-{repo_key(image, packages)}"
    if (repo / "Packages").is_file():
        return repo
    with _locked(cache / "repo.lock"):
        if (repo / "Packages").is_file():
            return repo
        _remove_stale(cache, "repo-*.tmp")
        start = time.monotonic()
        progress(f"filling the machines' apt repository {repo.name} (once)")
        tmp = cache / f"{repo.name}.tmp"
        tmp.mkdir()
        fill_repo(image, tmp, packages, scratch)
        tmp.rename(repo)
        progress(f"apt repository filled in {time.monotonic() - start:.0f}s")
    return repo


def fill_repo(image: Path, repo: Path, packages: tuple[str, ...], scratch: Path) -> None:
    """Download into REPO exactly the packages IMAGE lacks for PACKAGES (apt-get install
    --download-only in a throw-away overlay view of the image), then index them."""
    unmount_under(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    view = scratch / "view"
    for sub in ("upper", "work", "view"):
        (scratch / sub).mkdir(parents=True)
    options = f"lowerdir={image},upperdir={scratch / 'upper'},workdir={scratch / 'work'}"
    _run(["mount", "-t", "overlay", "overlay", "-o", options, str(view)])
    try:
        shutil.copy("/etc/resolv.conf", view / "etc/resolv.conf")
        _chroot(view, "apt-get", "-q", "update")
        _chroot(view, "apt-get", "-q", "-y", "install", "--download-only", *packages)
        debs = sorted((view / "var/cache/apt/archives").glob("*.deb"))
        if not debs:
            raise TestbedError(f"apt downloaded nothing for {' '.join(packages)}")
        for deb in debs:
            shutil.copy(deb, repo / deb.name)
    finally:
        unmount_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    index = _run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo).stdout
    (repo / "Packages.xz").write_bytes(lzma.compress(index.encode()))  # what apt asks first
    (repo / "Packages").write_text(index)  # last: its presence marks a complete repository


def serve_repo(repo: Path, ip: str, pidfile: Path, log: Path, port: int = REPO_PORT) -> int:
    """Serve REPO over HTTP on IP:PORT (the bridge address); the server's PID, in PIDFILE."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            repo_server_argv(repo, ip, port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop_pidfile(pidfile: Path, timeout: float = 10) -> None:
    """End the process PIDFILE names (TERM, then KILL), if it is still the one we started."""
    pid = read_pid(pidfile)
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, timeout)
    pidfile.unlink(missing_ok=True)


def read_pid(pidfile: Path) -> int | None:
    """The PID in PIDFILE when that process still runs (not a zombie)."""
    try:
        pid = int(pidfile.read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state in ("Z", "X") else pid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            if state == "X" or not Path(f"/proc/{pid}").exists():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def seed(m: Machine, hosts: str, bridge_ip: str, host_key: Path, authorized_key: str) -> None:
    """A fresh machine: empty upper/work/docker folders, then its identity in the upper layer."""
    for d in (m.upper, m.work, m.docker):
        shutil.rmtree(d, ignore_errors=True)
    for d in (m.upper, m.work, m.docker, m.root):
        d.mkdir(parents=True, exist_ok=True)
    for inside, text in identity_files(m, hosts, bridge_ip, authorized_key).items():
        path = m.upper / inside.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (m.upper / "root").chmod(0o700)
    (m.upper / "root/.ssh").chmod(0o700)
    (m.upper / "root/.ssh/authorized_keys").chmod(0o600)
    ssh = m.upper / "etc/ssh"
    shutil.copy(host_key, ssh / "ssh_host_ed25519_key")
    (ssh / "ssh_host_ed25519_key").chmod(0o600)
    shutil.copy(f"{host_key}.pub", ssh / "ssh_host_ed25519_key.pub")
    m.init.write_text(init_script(m, machine_cgroups()))
    m.init.chmod(0o700)


def machine_cgroups() -> tuple[CgroupMount, ...]:
    """The machine's cgroup hierarchies under /sys/fs/cgroup, as INIT mounts them afresh."""
    found: list[CgroupMount] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, fstype, options, *_ = line.split()
        if not point.startswith("/sys/fs/cgroup/") or fstype not in ("cgroup", "cgroup2"):
            continue
        folder = point.removeprefix("/sys/fs/cgroup/")
        if fstype == "cgroup2":
            found.append((folder, fstype, "rw"))
            continue
        opts = options.split(",")
        named = [o for o in opts if o.startswith("name=")]
        wanted = ["none", *named] if named else [o for o in folder.split(",")]
        found.append((folder, fstype, ",".join(wanted)))
    return tuple(found) or DEFAULT_CGROUPS


def boot(m: Machine) -> int:
    """Start M (systemd as its PID 1); the launcher's PID, also in M's pidfile."""
    with open(m.log, "wb") as out:
        proc = subprocess.Popen(
            launcher_argv(m),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    m.pidfile.write_text(str(proc.pid))
    return proc.pid


def pid1(m: Machine) -> int | None:
    """M's PID 1 (systemd) as the root namespace sees it: the launcher's one child."""
    return first_child(read_pid(m.pidfile))


def first_child(launcher: int | None) -> int | None:
    """A launcher's one child (a host's PID 1, seen from the root namespace), or None."""
    if not launcher:
        return None
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def poweroff(m: Machine, timeout: float = 20) -> None:
    """A clean poweroff (SIGRTMIN+4 to systemd), or SIGKILL of the launcher after TIMEOUT
    (--kill-child takes the whole host down)."""
    launcher = read_pid(m.pidfile)
    if launcher:
        first = pid1(m)
        if first:
            with contextlib.suppress(OSError):
                os.kill(first, signal.SIGRTMIN + 4)
        if not _wait_gone(launcher, timeout):
            with contextlib.suppress(OSError):
                os.kill(launcher, signal.SIGKILL)
            if not _wait_gone(launcher, 10):
                raise TestbedError(f"machine {m.name} (launcher {launcher}) does not stop")
    m.pidfile.unlink(missing_ok=True)
