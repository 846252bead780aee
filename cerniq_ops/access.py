"""What the deploy user may do on a host: the one sudo rule of db hosts, and reading `sudo -l`.

Procedures connect as `ssh_user` (`deploy`), never as root. On app hosts that user is in the
docker group and owns `app_root`; on db hosts it owns `backup_dir` and may run exactly
`cluster_owner_programs(s)` (pg_dump, pg_restore, psql) as the cluster owner (`db_os_user`)
without a password, through this rule in /etc/sudoers.d/ (docs/runbooks/hosts-and-access.md):

    deploy ALL=(postgres) NOPASSWD: /usr/lib/postgresql/15/bin/pg_dump, ...

Pure functions: the rule's text, and what a `sudo -n -l` listing grants (tested by equality).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SUDOERS_FILE = "/etc/sudoers.d/cerniq-deploy"


def sudo_rule(user: str, owner: str, programs: Sequence[str]) -> str:
    """The sudoers line letting USER run exactly PROGRAMS as OWNER, without a password."""
    return f"{user} ALL=({owner}) NOPASSWD: {', '.join(programs)}"


@dataclass(frozen=True)
class Grant:
    """One command a `sudo -l` listing lets the user run: as whom, and whether unprompted."""

    runas: str
    command: str
    nopasswd: bool


_ENTRY = re.compile(r"^\((?P<runas>[^)]*)\)\s*(?P<rest>.*)$")
_TAG = re.compile(r"^(?:[A-Z_]+:\s*)")


def parse_sudo_list(text: str) -> list[Grant]:
    """The grants in `sudo -n -l` output (the lines under `User X may run the following ...`).

    An entry is `(runas[ : group]) [TAG: ...] cmd, cmd`; continuation lines are folded in.
    """
    grants: list[Grant] = []
    in_rules = False
    entries: list[str] = []
    for line in text.splitlines():
        if " may run the following commands" in line:
            in_rules = True
            continue
        if not in_rules or not line.strip():
            continue
        if not line[:1].isspace():
            in_rules = False
            continue
        stripped = line.strip()
        if stripped.startswith("(") or not entries:
            entries.append(stripped)
        else:
            entries[-1] += " " + stripped
    for entry in entries:
        m = _ENTRY.match(entry)
        if not m:
            continue
        runas = m["runas"].split(":")[0].strip()
        rest, nopasswd = m["rest"], False
        while tag := _TAG.match(rest):
            nopasswd = nopasswd or tag.group().startswith("NOPASSWD")
            rest = rest[tag.end() :]
        for command in (c.strip() for c in rest.split(",")):
            if command:
                grants.append(Grant(runas, command, nopasswd))
    return grants


def sudo_rule_problems(
    grants: list[Grant], owner: str, programs: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(missing, broader): PROGRAMS not runnable as OWNER without a password, and grants
    beyond them (ALL, another user, other commands) that the deploy user does not need."""
    have = {(g.runas, g.command) for g in grants if g.nopasswd}
    missing = [p for p in programs if (owner, p) not in have]
    broader = sorted(
        {
            f"({g.runas}) {g.command}"
            for g in grants
            if g.runas != owner or g.command not in programs
        }
    )
    return missing, broader


def account_problems(
    user: str,
    expected_user: str,
    groups: list[str],
    owners: dict[str, str | None],
    app_host: bool,
) -> list[str]:
    """What is wrong with the login account on a host: logged in as someone else (root), not
    in the docker group on an app host, or not the owner of a folder procedures write to.
    OWNERS maps each such folder to its owner (None: the folder is missing)."""
    problems = []
    if user != expected_user:
        problems.append(f"logged in as {user}, not {expected_user} (procedures never use root)")
    if app_host and "docker" not in groups:
        problems.append(f"{user} is not in the docker group (cannot reach dockerd's socket)")
    for path, owner in owners.items():
        if owner is None:
            problems.append(f"{path} is missing")
        elif owner != expected_user:
            problems.append(f"{path} is owned by {owner}, not {expected_user}")
    return problems


def redis_reply_problem(where: str, reply: str) -> str | None:
    """A PING sent without the password is answered +PONG, or NOAUTH by a Redis that needs
    one: either proves a Redis answers at WHERE; anything else does not."""
    if reply.startswith("+PONG") or reply.startswith("-NOAUTH"):
        return None
    shown = reply.strip()[:80] or "no answer"
    return f"no Redis answers at {where}: {shown}"
