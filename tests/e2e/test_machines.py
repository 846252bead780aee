"""Full-machine hosts (testbed/machines.py): the bare environment's app and db hosts boot a
Debian 12 image with systemd as PID 1; only root logs in, by key; nothing of ours is there;
apt installs from the testbed's local repository; what a host changes stays in that host."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from testbed import machines

pytestmark = pytest.mark.e2e
TESTBED_BARE_ENV = "staging"
MACHINES = ("staging-app1", "staging-db")


@pytest.mark.parametrize("name", MACHINES)
def test_a_machine_boots_systemd_with_every_unit_running(root_host, name):
    host = root_host(name)
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    failed = host.run("systemctl list-units --failed --no-legend --plain").stdout.strip()
    assert (state, failed) == ("running", "")
    assert host.check_output("cat /proc/1/comm") == "systemd"
    assert host.check_output("hostname") == name
    assert host.check_output("systemd-detect-virt --container") == "container-other"


def test_a_machine_is_bare_and_only_root_logs_in(testbed, root_host):
    host = root_host("staging-app1")
    assert not host.user("deploy").exists
    for package in ("docker.io", "postgresql", "redis-server", "sudo", "jq"):
        assert not host.package(package).is_installed, package
    assert not host.file("/opt/cerniq").exists
    as_deploy = subprocess.run(
        ["ssh", "-F", str(testbed.tb.ssh_config), "-o", "BatchMode=yes", "staging-app1", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert as_deploy.returncode == 255 and "Permission denied" in as_deploy.stderr
    # the environment's load balancer stays a ready-made namespace host (sshd is its PID 1)
    assert root_host("staging-lb").check_output("cat /proc/1/comm") == "sshd"


def test_apt_installs_from_the_testbeds_local_repository(testbed, root_host):
    host = root_host("staging-app1")
    assert host.file("/etc/apt/sources.list").content_string == machines.sources_list(
        testbed.tb.bridge_ip
    )
    assert host.check_output("ls /etc/apt/sources.list.d") == ""
    host.check_output("apt-get -q update")
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq")
    assert host.check_output("jq --version").startswith("jq-1.")
    policy = host.check_output("apt-cache policy jq")
    assert f"http://{testbed.tb.bridge_ip}:{machines.REPO_PORT} ./ Packages" in policy


def test_useradd_in_a_machine_changes_neither_the_machine_nor_another_host(root_host):
    host = root_host("staging-app1")
    host.check_output("useradd -m cqmprobe")
    assert host.user("cqmprobe").exists
    assert "cqmprobe" not in Path("/etc/passwd").read_text()
    assert not root_host("staging-db").user("cqmprobe").exists
    # its /dev is its own: the machine's /dev/null is untouched
    null = os.stat("/dev/null")
    assert (stat.S_ISCHR(null.st_mode), null.st_mode & 0o777, null.st_uid) == (True, 0o666, 0)
