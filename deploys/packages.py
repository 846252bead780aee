"""Debian packages, for every role: apt's lists at most a day old, what a killed run left half
installed finished first, a lock still held by a run that is ending waited for."""

from pyinfra import host
from pyinfra.operations import apt, server

from deploys.facts import DpkgInterrupted

APT_CACHE_SECONDS = 24 * 3600  # `apt-get update` at most once a day: re-runs change nothing
LOCK_TIMEOUT_SECONDS = 120  # dpkg's lock, held by an apt a killed run left running


def packages(names: list[str]):
    """NAMES installed; the operation's meta (for `_if` conditions of later operations)."""
    if host.get_fact(DpkgInterrupted):
        server.shell(
            name="dpkg --configure -a (packages a killed run left half installed)",
            commands=[
                "DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confdef --force-confold"
            ],
        )
    return apt.packages(
        name=f"packages {' '.join(names)}",
        packages=names,
        update=True,
        cache_time=APT_CACHE_SECONDS,
        extra_install_args=f"-o DPkg::Lock::Timeout={LOCK_TIMEOUT_SECONDS}",
    )
