"""Facts of ours, read like pyinfra's: what a role must know of a host before it changes it."""

from __future__ import annotations

import base64
import hashlib
import hmac

from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.facts.postgres import PostgresFactBase, make_psql_command


class RolePassword(PostgresFactBase):
    """The SCRAM verifier PostgreSQL keeps for ROLE (pg_authid.rolpassword), or None (no such
    role, no password, no PostgreSQL yet, or not yet on its port: a killed first run).
    Needs the cluster owner (`_su_user`)."""

    @staticmethod
    def default() -> None:
        return None

    def command(self, role: str, psql_port: int | None = None):  # type: ignore[override]
        sql = f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role.replace(chr(39), '')}'"
        # a server not (yet) on its port is "unknown": the role operation then sets it
        return StringCommand(
            make_psql_command(port=psql_port), "-Atc", QuoteString(sql), "2>/dev/null || true"
        )

    def process(self, output: list[str]) -> str | None:
        return output[0] if output and output[0] else None


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether PASSWORD is the one VERIFIER (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:
    <ServerKey>`, RFC 5802/7677) was made from: so a role's password is set only when the
    secret changed, and a converged setup changes nothing. (ASCII passwords: SASLprep leaves
    them as they are.)"""
    try:
        scheme, rest = (verifier or "").split("$", 1)
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        stored = base64.b64decode(keys.split(":", 1)[0])
        salted = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    if scheme != "SCRAM-SHA-256":
        return False
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored)


class DpkgInterrupted(FactBase):
    """Whether dpkg was stopped half way (a killed run): its journal in /var/lib/dpkg/updates
    is not empty, and apt refuses to install until `dpkg --configure -a` finishes the job."""

    @staticmethod
    def default() -> bool:
        return False

    def command(self) -> str:
        return "find /var/lib/dpkg/updates -type f 2>/dev/null | head -n 1"

    def process(self, output: list[str]) -> bool:
        return any(line.strip() for line in output)
