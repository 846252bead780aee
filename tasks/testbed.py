"""`invoke testbed.*`: the local testbed of real servers (SSH hosts, dockerd, registry, DBs)."""

import os

from invoke import task

from cerniq_ops.output import say, table
from cerniq_ops.settings import testbed_dir
from tasks._cli import cli
from testbed import images
from testbed.lifecycle import TestbedManager, read_env_file
from testbed.plan import Testbed


def _manager() -> TestbedManager:
    return TestbedManager(Testbed.from_env(testbed_dir()), progress=say)


def aim_at_testbed(manager: TestbedManager) -> None:
    """Point this process's settings at the testbed, as `. .testbed/env` does for a shell."""
    os.environ.update(read_env_file(manager.tb.env_file))


@task
@cli
def up(c):
    """Build the testbed (idempotent; clears what a killed run left first), publish v1.0.0."""
    tb = _manager()
    tb.up()
    say(f"testbed up; aim cerniq-ops at it with: . {tb.tb.env_file}")


@task
@cli
def down(c):
    """Remove every testbed host, namespace, veth, cgroup and the bridge."""
    tb = _manager()
    tb.down()
    left = tb.leftovers()
    if left:
        say(f"left behind: {', '.join(left)}", err=True)


@task
@cli
def status(c):
    """Show each testbed host: address, role, PID 1, SSH reachable."""
    tb = _manager()
    rows = [
        (
            s.host.name,
            s.host.ip,
            s.host.env or "-",
            s.host.role,
            s.pid1 or "-",
            "up" if s.up else "DOWN",
        )
        for s in tb.status()
    ]
    say(table(("host", "address", "env", "role", "pid1", "state"), rows))


@task(help={"version": "tag to publish, e.g. v1.2.0", "broken": "its /health fails (404)"})
@cli
def publish(c, version, broken=False):
    """Publish app VERSION (api, web, workers) to the testbed registry, as the app's CI would."""
    from cerniq_ops.deploy_inputs import validate_version

    validate_version(version)
    for ref in images.publish_app(_manager().registry(), "cerniq", version, broken=broken):
        say(f"published {ref}{' (broken)' if broken else ''}")
