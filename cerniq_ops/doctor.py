"""`invoke doctor`: the seed's prerequisite check (2.1) for this tooling, with a fix per failure.

Here: Python, invoke, pyinfra, pytest-testinfra, the ssh client, and the environment's secrets
(names only); for each environment's hosts: SSH (reachable? host key known and matching? key
accepted?), docker and compose on app hosts, PostgreSQL tools and the deploy user's sudo rule
on the db host, the registry from here and from every app host, PostgreSQL's port and Redis
(AUTH + PING) from here. `--trust` first records the host keys not yet known (printing each
fingerprint); a changed key is never replaced.

Pure functions turn what was observed into Findings (tested by equality); `run` observes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import paramiko

from cerniq_ops import access
from cerniq_ops import settings as settings_mod
from cerniq_ops.output import table
from cerniq_ops.settings import HostSpec, Settings

OK, FAIL, WARN, SKIP = "ok", "FAIL", "WARN", "skip"
SSH_TIMEOUT = 5.0
REQUIREMENTS = (  # distribution, minimum, below (exclusive), why
    ("invoke", (2, 2), None, "runs the tasks"),
    ("pyinfra", (3, 2), (4,), "changes the hosts"),
    ("pytest-testinfra", (10,), None, "runs `invoke verify`"),
    ("psycopg", (3, 2), None, "runs migrations and backups"),
)
INSTALL_HINT = "pip install -e '.[test]' in the project's .venv (`make venv`)"


@dataclass(frozen=True)
class Finding:
    check: str
    target: str
    status: str  # ok | FAIL | WARN | skip
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


# -- pure ------------------------------------------------------------------------------------
def version_tuple(text: str) -> tuple[int, ...]:
    """`3.0.0rc1` -> (3, 0, 0): the leading digits of each dotted part, up to the first without."""
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d*", piece).group()  # type: ignore[union-attr]
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def python_finding(version: tuple[int, ...], minimum: tuple[int, int] = (3, 11)) -> Finding:
    shown = ".".join(str(v) for v in version[:3])
    if tuple(version[:2]) >= minimum:
        return Finding("python", "local", OK, f"Python {shown}")
    return Finding(
        "python",
        "local",
        FAIL,
        f"Python {shown}; {minimum[0]}.{minimum[1]}+ required",
        f"install Python {minimum[0]}.{minimum[1]}+ and recreate .venv (`make clean venv`)",
    )


def package_finding(
    name: str,
    installed: str | None,
    minimum: tuple[int, ...],
    below: tuple[int, ...] | None,
    why: str,
) -> Finding:
    wanted = (
        ">=" + ".".join(map(str, minimum)) + (f",<{'.'.join(map(str, below))}" if below else "")
    )
    if installed is None:
        return Finding(name, "local", FAIL, f"not installed ({why}; needs {wanted})", INSTALL_HINT)
    v = version_tuple(installed)
    if v < minimum or (below is not None and v >= below):
        return Finding(name, "local", FAIL, f"{installed} installed, needs {wanted}", INSTALL_HINT)
    return Finding(name, "local", OK, f"{name} {installed}")


def secret_finding(s: Settings, field: str, required: bool, without: str) -> Finding:
    """Whether the variable named by setting FIELD is set (its value is never shown)."""
    var = getattr(s, field)
    label = field.removesuffix("_env").replace("_", " ")
    if s.secret(field):
        return Finding("secret", s.env, OK, f"{var} set ({label})")
    return Finding(
        "secret",
        s.env,
        FAIL if required else WARN,
        f"{var} missing ({label}); {without}",
        f"export {var}=... (from the team's secret store; never in a file in the repo)",
    )


def ssh_target(s: Settings, spec: HostSpec) -> dict[str, Any]:
    """How we reach SPEC: address, port, user, key and known-hosts file from its host data."""
    d = spec.data
    known = d.get("ssh_known_hosts_file") or s.known_hosts_file
    return {
        "address": spec.address,
        "port": int(d.get("ssh_port", s.ssh_port)),
        "user": str(d.get("ssh_user", s.ssh_user)),
        "key": d.get("ssh_key"),
        "known_hosts": known,
    }


def ssh_failure(target: str, t: dict[str, Any], exc: BaseException) -> Finding:
    """Classify why SSH to a host failed: unreachable/refused, host key, or authentication."""
    where = f"{t['user']}@{t['address']}:{t['port']}"
    known = t["known_hosts"]
    if isinstance(exc, ConnectionRefusedError | paramiko.ssh_exception.NoValidConnectionsError):
        return Finding(
            "ssh",
            target,
            FAIL,
            f"connection refused by {t['address']}:{t['port']} (sshd not running?)",
            f"start sshd on {target} (`systemctl start ssh`) or fix ssh_port in the inventory",
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return Finding(
            "ssh",
            target,
            FAIL,
            f"no answer from {t['address']}:{t['port']} within {SSH_TIMEOUT:.0f}s (unreachable)",
            f"check that {target} is up and the network/firewall lets port {t['port']} through",
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return Finding(
            "ssh",
            target,
            FAIL,
            f"HOST KEY MISMATCH for {t['address']}: it offers {exc.key.get_name()} "
            f"{exc.key.get_fingerprint().hex()[:16]}..., {known} has another",
            f"find out why the key changed before anything else; if the host was rebuilt, "
            f"`ssh-keygen -R {t['address']} -f {known}` then add the new key",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return Finding(
            "ssh",
            target,
            FAIL,
            f"authentication failed for {where} (key {t['key'] or 'agent/default keys'})",
            f"add our public key to ~{t['user']}/.ssh/authorized_keys on {target}, or fix "
            "ssh_user/ssh_key in the inventory",
        )
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return Finding(
            "ssh",
            target,
            FAIL,
            f"host key of {t['address']} unknown (not in {known})",
            f"check the fingerprint with the host's owner, then `ssh-keyscan -p {t['port']} "
            f"{t['address']} >> {known}`",
        )
    if isinstance(exc, OSError):
        return Finding(
            "ssh",
            target,
            FAIL,
            f"{t['address']}:{t['port']} unreachable: {exc.strerror or exc}",
            f"check the address of {target} in the inventory and the route to it",
        )
    return Finding(
        "ssh",
        target,
        FAIL,
        f"SSH to {where} failed: {type(exc).__name__}: {exc}",
        "run `ssh -v` to the host to see where it stops",
    )


def sudo_finding(s: Settings, target: str, ok: bool, listing: str) -> Finding:
    """Whether `sudo -n -l` as the ssh user grants exactly the cluster owner's programs."""
    from cerniq_ops.backup.commands import cluster_owner_programs

    programs = cluster_owner_programs(s)
    rule = access.sudo_rule(s.ssh_user, s.db_os_user, programs)
    names = ", ".join(p.rsplit("/", 1)[-1] for p in programs)
    fix = (
        f"`invoke setup --env {s.env}` writes `{rule}` to {access.SUDOERS_FILE} on {target} "
        "(docs/runbooks/hosts-and-access.md)"
    )
    grants = access.parse_sudo_list(listing) if ok else []
    missing, broader = access.sudo_rule_problems(grants, s.db_os_user, programs)
    if missing:
        what = ", ".join(p.rsplit("/", 1)[-1] for p in missing)
        first = (listing.strip().splitlines() or ["no output"])[0][:80]
        seen = "" if grants else f" (sudo -n -l: {first})"
        return Finding(
            "sudo",
            target,
            FAIL,
            f"{s.ssh_user} may not run {what} as {s.db_os_user} without a password{seen}",
            fix,
        )
    if broader:
        return Finding(
            "sudo",
            target,
            WARN,
            f"{s.ssh_user} may also run {'; '.join(broader)[:120]} (more than backups need)",
            f"narrow the rule to `{rule}`",
        )
    return Finding("sudo", target, OK, f"{s.ssh_user} may run {names} as {s.db_os_user}")


def redis_request(password: str | None) -> bytes:
    """RESP: AUTH PASSWORD (when given), then PING."""

    def command(*args: str) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            data = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    return (command("AUTH", password) if password else b"") + command("PING")


def redis_finding(
    s: Settings, target: str, where: str, replies: list[str] | None, error: str = ""
) -> Finding:
    """Redis' replies to redis_request (None: no connection) as a finding."""
    var = s.redis_password_env
    if replies is None:
        return Finding(
            "redis",
            target,
            FAIL,
            f"{where} unreachable from here: {error}",
            f"start redis-server on {target} bound to its address, port {s.redis_port} "
            "(docs/runbooks/hosts-and-access.md)",
        )
    last = replies[-1] if replies else ""
    if last == "+PONG":
        auth = "with its password" if len(replies) > 1 else "without a password"
        return Finding("redis", target, OK, f"{where} answers PING {auth}")
    if any("WRONGPASS" in r or "invalid password" in r for r in replies):
        return Finding(
            "redis", target, FAIL, f"{where} refused the password in {var}", f"fix {var}"
        )
    if "NOAUTH" in last:
        return Finding(
            "redis", target, FAIL, f"{where} needs a password; {var} is not set", f"export {var}"
        )
    return Finding("redis", target, FAIL, f"{where} answered {last[:60]!r} to PING", "")


def fingerprint(key_bytes: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")


def known_hosts_entry(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def trust_finding(
    target: str,
    entry: str,
    known: str,
    offered: tuple[str, str],
    recorded: dict[str, str],
    fp: str,
) -> tuple[Finding, str | None]:
    """(finding, line to append to KNOWN or None): an unknown key is recorded, a known one
    is left alone, a different key of the same type is a mismatch and never replaced."""
    key_type, key_b64 = offered
    if recorded.get(key_type) == key_b64:
        return Finding("trust", target, OK, f"{entry} {key_type} {fp} already in {known}"), None
    if key_type in recorded:
        return (
            Finding(
                "trust",
                target,
                FAIL,
                f"HOST KEY MISMATCH for {entry}: it offers {key_type} {fp}, {known} has another; "
                "not replaced",
                f"find out why the key changed; if the host was rebuilt, "
                f"`ssh-keygen -R {entry} -f {known}` then `--trust` again",
            ),
            None,
        )
    line = f"{entry} {key_type} {key_b64}"
    return Finding("trust", target, OK, f"recorded {entry} {key_type} {fp} in {known}"), line


def registry_finding(target: str, registry: str, code: str | None, error: str = "") -> Finding:
    """The registry's /v2/ answered CODE (200 or 401 mean it is there)."""
    if code in ("200", "401"):
        return Finding("registry", target, OK, f"{registry} answers /v2/ (HTTP {code})")
    detail = f"{registry} answered HTTP {code}" if code else f"{registry} unreachable: {error}"
    return Finding(
        "registry",
        target,
        FAIL,
        detail,
        f"check that the registry runs and that {target} may reach it (firewall, DNS, TLS)",
    )


def command_finding(
    check: str, target: str, ok: bool, output: str, fix: str, what: str | None = None
) -> Finding:
    first = (output.strip().splitlines() or ["no output"])[0][:100]
    if ok:
        return Finding(check, target, OK, what or first)
    return Finding(check, target, FAIL, first, fix)


def render(findings: Iterable[Finding]) -> str:
    rows = [(f.check, f.target, f.status, f.detail, f.fix) for f in findings]
    return table(("check", "target", "status", "detail", "fix"), rows)


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.status == s) for s in (OK, FAIL, WARN, SKIP)}
    verdict = "FAILED" if counts[FAIL] else "ok"
    return (
        f"doctor: {verdict}: {counts[OK]} ok, {counts[FAIL]} failed, {counts[WARN]} warning(s), "
        f"{counts[SKIP]} skipped"
    )


def as_dicts(findings: list[Finding]) -> list[dict[str, str]]:
    return [asdict(f) for f in findings]


# -- observing -------------------------------------------------------------------------------
def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_local() -> list[Finding]:
    findings = [python_finding(tuple(sys.version_info[:3]))]
    for dist, minimum, below, why in REQUIREMENTS:
        findings.append(package_finding(dist, _installed(dist), minimum, below, why))
    ssh = shutil.which("ssh")
    if ssh:
        out = subprocess.run([ssh, "-V"], capture_output=True, text=True, timeout=10)
        findings.append(Finding("ssh-client", "local", OK, (out.stderr or out.stdout).strip()))
    else:
        findings.append(
            Finding(
                "ssh-client",
                "local",
                FAIL,
                "no `ssh` on PATH (verify's testinfra uses it)",
                "apt-get install openssh-client",
            )
        )
    return findings


def connect(s: Settings, spec: HostSpec, timeout: float = SSH_TIMEOUT) -> paramiko.SSHClient:
    """An SSH client to SPEC that accepts only a known, matching host key."""
    t = ssh_target(s, spec)
    sock = socket.create_connection((t["address"], t["port"]), timeout=timeout)
    client = paramiko.SSHClient()
    if Path(t["known_hosts"]).exists():
        client.load_host_keys(t["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            t["address"],
            port=t["port"],
            username=t["user"],
            key_filename=t["key"],
            look_for_keys=t["key"] is None,
            allow_agent=t["key"] is None,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def remote(client: paramiko.SSHClient, command: str, timeout: float = 30) -> tuple[bool, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status() == 0, (out.strip() or err.strip())


def _registry_url(s: Settings) -> str:
    return f"{s.registry_scheme}://{s.registry}/v2/"


def check_registry_here(s: Settings) -> Finding:
    import requests

    try:
        code = str(requests.get(_registry_url(s), timeout=5).status_code)
        return registry_finding(f"local ({s.env})", s.registry, code)
    except requests.RequestException as exc:
        reason = str(exc).split(":")[-1].strip() or type(exc).__name__
        return registry_finding(f"local ({s.env})", s.registry, None, reason[:80])


def check_postgres_here(s: Settings) -> Finding:
    info = s.db_conninfo()
    where = f"{info['host']}:{info['port']}"
    target = s.db_host.name
    try:
        socket.create_connection((info["host"], info["port"]), timeout=SSH_TIMEOUT).close()
    except OSError as exc:
        return Finding(
            "postgres",
            target,
            FAIL,
            f"{where} unreachable from here: {exc.strerror or exc}",
            f"`invoke setup --env {s.env}` starts PostgreSQL on {target}; this machine must "
            f"reach port {info['port']} (setting db_clients lets it in)",
        )
    return Finding("postgres", target, OK, f"{where} accepts connections")


def check_redis_here(s: Settings) -> Finding:
    host, port = s.redis_address()
    where = f"{host}:{port}"
    target = s.db_host.name
    try:
        with socket.create_connection((host, port), timeout=SSH_TIMEOUT) as conn:
            request = redis_request(s.secret("redis_password_env"))
            conn.sendall(request)
            expected = request.count(b"\r\n*") + 1
            data = b""
            while data.count(b"\r\n") < expected:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return redis_finding(s, target, where, None, str(exc.strerror or exc))
    replies = data.decode(errors="replace").split("\r\n")[:expected]
    return redis_finding(s, target, where, [r for r in replies if r])


def trust_host(s: Settings, spec: HostSpec) -> Finding:
    """Record SPEC's host key in its known-hosts file when no key of that type is there."""
    t = ssh_target(s, spec)
    entry = known_hosts_entry(t["address"], t["port"])
    known = t["known_hosts"]
    try:
        sock = socket.create_connection((t["address"], t["port"]), timeout=SSH_TIMEOUT)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=SSH_TIMEOUT)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
    except (OSError, paramiko.SSHException) as exc:
        return ssh_failure(spec.name, t, exc)
    keys = paramiko.HostKeys()
    if Path(known).exists():
        keys.load(known)
    recorded = {k: v.get_base64() for k, v in (keys.lookup(entry) or {}).items()}
    finding, line = trust_finding(
        spec.name,
        entry,
        known,
        (key.get_name(), key.get_base64()),
        recorded,
        fingerprint(key.asbytes()),
    )
    if line:
        path = Path(known)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text() if path.exists() else ""
        with path.open("a") as f:
            f.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")
    return finding


def check_host(s: Settings, spec: HostSpec) -> list[Finding]:
    t = ssh_target(s, spec)
    try:
        client = connect(s, spec)
    except (OSError, paramiko.SSHException) as exc:
        failure = ssh_failure(spec.name, t, exc)
        later = ["docker", "compose", "registry"] if "app_servers" in spec.roles else []
        later += ["pg-tools", "sudo"] if "db_servers" in spec.roles else []
        skipped = [
            Finding(c, spec.name, SKIP, "not checked: no SSH", "fix SSH first") for c in later
        ]
        return [failure, *skipped]
    findings = [Finding("ssh", spec.name, OK, f"{t['user']}@{t['address']}:{t['port']}, key known")]
    try:
        if "app_servers" in spec.roles:
            ok, out = remote(client, "docker version --format '{{.Server.Version}}'")
            findings.append(
                command_finding(
                    "docker",
                    spec.name,
                    ok,
                    out,
                    f"`invoke setup --env {s.env}` installs docker and puts {s.ssh_user} in "
                    "its group (docs/runbooks/setup.md)",
                    f"docker {out}",
                )
            )
            ok, out = remote(client, shlex.join([*s.compose_command, "version"]))
            findings.append(
                command_finding(
                    "compose",
                    spec.name,
                    ok,
                    out,
                    f"`invoke setup --env {s.env}` installs compose (setting docker_packages); "
                    f"`{' '.join(s.compose_command)}` must work (setting compose_command)",
                )
            )
            ok, out = remote(
                client,
                shlex.join(
                    ["curl", "-sS", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}"]
                    + [_registry_url(s)]
                ),
            )
            code = out if ok and out.isdigit() else None
            findings.append(registry_finding(spec.name, s.registry, code, out[:80]))
        if "db_servers" in spec.roles:
            ok, out = remote(client, shlex.join([f"{s.pg_bin_dir}/pg_dump", "--version"]))
            findings.append(
                command_finding(
                    "pg-tools",
                    spec.name,
                    ok,
                    out,
                    f"`invoke setup --env {s.env}` installs PostgreSQL; its tools must be in "
                    f"{s.pg_bin_dir} (setting pg_bin_dir)",
                )
            )
            if t["user"] == "root":
                findings.append(
                    Finding("sudo", spec.name, SKIP, "connected as root: procedures use deploy")
                )
            else:
                ok, out = remote(client, "sudo -n -l")
                findings.append(sudo_finding(s, spec.name, ok, out))
    finally:
        client.close()
    return findings


def hooks_finding(s: Settings, folder: Path, entries: dict[str, bool]) -> Finding:
    """The project's hooks (cerniq_ops.hooks) found in FOLDER: listed, or WARN for a file
    that will not run (not executable, not a hook's name)."""
    from cerniq_ops import hooks

    found, problems = hooks.describe(folder, entries)
    shown = ", ".join(found) if found else "none"
    if problems:
        return Finding(
            "hooks",
            s.env,
            WARN,
            f"{shown} in {folder}; " + "; ".join(problems),
            "chmod +x the hook, or rename it to one of: " + ", ".join(hooks.EVENTS),
        )
    return Finding("hooks", s.env, OK, f"{shown} in {folder}")


def check_env(s: Settings) -> list[Finding]:
    from cerniq_ops import hooks

    folder = hooks.hooks_dir(s)
    findings = [
        hooks_finding(s, folder, hooks.scan(folder)),
        secret_finding(s, "db_password_env", True, "deploys, migrations and backups need it"),
        secret_finding(
            s, "github_token_env", False, "deploys need --skip-ci-check --reason without it"
        ),
        secret_finding(s, "slack_webhook_env", False, "notifications are skipped without it"),
        secret_finding(
            s, "redis_password_env", False, "the app's REDIS_URL carries no password without it"
        ),
        check_registry_here(s),
    ]
    for spec in s.hosts:
        findings += check_host(s, spec)
    if s.hosts_in("db_servers"):
        findings.append(check_postgres_here(s))
        findings.append(check_redis_here(s))
    return findings


def run(envs: Iterable[str], trust: bool = False) -> list[Finding]:
    """Every finding: the local tooling once, then each environment in turn (with TRUST, the
    unknown host keys of each environment are recorded first)."""
    findings = check_local()
    for env in envs:
        s = settings_mod.load(env)
        if trust:
            findings += [trust_host(s, spec) for spec in s.hosts]
        findings += check_env(s)
    return findings


def default_envs() -> tuple[str, ...]:
    return settings_mod.ENVIRONMENTS
