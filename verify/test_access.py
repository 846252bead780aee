"""Checks of how procedures reach each host: the deploy user, its folders and sudo rule, and
the app's Redis (docs/runbooks/hosts-and-access.md)."""

from __future__ import annotations

import shlex
import urllib.parse

import pytest

from cerniq_ops import access
from verify.helpers import problems_or_pass, read

# PING over bash's /dev/tcp (no redis-cli needed on app hosts; no password on a command line)
PING_SCRIPT = (
    'exec 3<>"/dev/tcp/$0/$1" && printf "PING\\r\\n" >&3 && read -r -t 3 r <&3 && echo "$r"'
)


@pytest.mark.hosts("all")
def test_deploy_user(host, spec, settings, detail):
    """Logged in as ssh_user (never root); in the docker group on app hosts; owner of app_root
    and, on db hosts, of backup_dir; on db hosts `sudo -n -l` grants exactly the sudo rule."""
    user = host.check_output("id -un")
    groups = host.check_output("id -Gn").split()
    folders = [settings.app_root]
    if "db_servers" in spec.roles:
        folders.append(settings.backup_dir)
    out = host.run("stat -c '%n|%U' -- " + " ".join(shlex.quote(p) for p in folders))
    owners: dict[str, str | None] = dict.fromkeys(folders)
    for line in out.stdout.splitlines():
        name, _, owner = line.partition("|")
        if name in owners:
            owners[name] = owner
    problems = access.account_problems(
        user, settings.ssh_user, groups, owners, "app_servers" in spec.roles
    )
    seen = f"{user} ({', '.join(groups)}) owns {', '.join(folders)}"
    if "db_servers" in spec.roles and user != "root":
        from cerniq_ops.backup.commands import cluster_owner_programs

        listing = host.run("sudo -n -l")
        grants = access.parse_sudo_list(listing.stdout) if listing.rc == 0 else []
        programs = cluster_owner_programs(settings)
        missing, broader = access.sudo_rule_problems(grants, settings.db_os_user, programs)
        rule = access.sudo_rule(settings.ssh_user, settings.db_os_user, programs)
        if missing:
            names = ", ".join(p.rsplit("/", 1)[-1] for p in missing)
            problems.append(
                f"{user} may not run {names} as {settings.db_os_user} (sudo rule missing: "
                f"`{rule}` in {access.SUDOERS_FILE})"
            )
        if broader:
            problems.append(f"{user} may run more than the sudo rule: {'; '.join(broader)[:120]}")
        seen += f"; sudo: exactly {len(programs)} programs as {settings.db_os_user}"
    problems_or_pass(problems, detail, seen)


@pytest.mark.hosts("app_servers")
def test_redis(host, spec, settings, detail):
    """The app's REDIS_URL (in app_root/.env) points at the environment's Redis, and a Redis
    answers there from this host (PING: PONG, or NOAUTH when it needs the password)."""
    address, port = settings.redis_address()
    where = f"{address}:{port}"
    problems = []
    env_text = read(host, f"{settings.app_root.rstrip('/')}/.env")
    if env_text is not None:
        url = next(
            (
                line.split("=", 1)[1]
                for line in env_text.splitlines()
                if line.startswith("REDIS_URL=")
            ),
            None,
        )
        parsed = urllib.parse.urlsplit(url or "")
        if url is None:
            problems.append(f"{settings.app_root}/.env has no REDIS_URL")
        elif (parsed.hostname, parsed.port) != (address, port):
            problems.append(
                f"REDIS_URL in {settings.app_root}/.env points at {parsed.hostname}:{parsed.port},"
                f" not {where}"
            )
    out = host.run(shlex.join(["timeout", "5", "bash", "-c", PING_SCRIPT, address, str(port)]))
    problem = access.redis_reply_problem(where, out.stdout or out.stderr)
    if problem:
        problems.append(problem)
    problems_or_pass(problems, detail, f"Redis answers at {where} from {spec.name}")
