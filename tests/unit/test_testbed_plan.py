"""The testbed's pure builders: names, generated inventories and settings, boot scripts."""

import shlex

import pytest

from cerniq_ops import settings
from testbed import plan
from testbed.lifecycle import read_env_file

pytestmark = pytest.mark.unit


@pytest.fixture
def tb(tmp_path):
    return plan.Testbed(dir=tmp_path, prefix="cqz", net="10.99.0")


def test_interface_names_fit_linux_limits(tb):
    names = [tb.bridge] + [n for h in tb.hosts for n in tb.veth(h)]
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)


def test_generated_inventory_and_group_data_load_as_the_environment(tb, monkeypatch):
    for env in settings.ENVIRONMENTS:
        (tb.dir / "inventories").mkdir(exist_ok=True)
        (tb.dir / "group_data").mkdir(exist_ok=True)
        (tb.dir / "inventories" / f"{env}.py").write_text(plan.inventory_module(tb, env))
        (tb.dir / "group_data" / f"{env}.py").write_text(plan.group_data_module(tb, env))
    monkeypatch.setenv("CERNIQ_TESTBED_DIR", str(tb.dir))
    prod = settings.load("production", target="testbed")
    assert [h.name for h in prod.app_hosts] == ["prod-app1", "prod-app2"]
    assert prod.db_host.address == "10.99.0.23"
    assert prod.registry == "10.99.0.2:5000"
    assert prod.image("api", "v1.0.0") == "10.99.0.2:5000/cerniq/api:v1.0.0"
    assert prod.db_password_env == "CERNIQ_TESTBED_PRODUCTION_DB_PASSWORD"
    assert prod.public_url == "http://10.99.0.21:64000"
    assert prod.app_root == "/opt/cerniq"  # the seed's layout, as on real hosts
    staging = settings.load("staging", target="testbed")
    assert [h.name for h in staging.hosts] == ["staging-app1", "staging-db"]


def test_boot_script_binds_per_host_state_and_ends_as_sshd(tb):
    app = tb.host("prod-app1")
    script = plan.inner_script(tb, app, "", 64032)
    for inside, _ in plan.BIND_DIRS + plan.BIND_FILES:
        assert f" {inside}" in script
    assert "--cgroup-parent /cqz-prod-app1" in script
    assert "--insecure-registry 10.99.0.2:5000" in script
    assert script.rstrip().splitlines()[-1].startswith("exec /usr/sbin/sshd -D")
    assert "initdb" not in script
    db = plan.inner_script(tb, tb.host("prod-db"), "pw'x", 64032)
    assert "listen_addresses=10.99.0.23" in db and "port=64032" in db
    psql = next(line for line in db.splitlines() if "psql" in line)
    argv = shlex.split(psql)
    assert argv[argv.index("-c") + 1] == "CREATE ROLE c3rn1q LOGIN CREATEDB PASSWORD 'pw''x'"
    assert "dockerd" not in db


def test_ssh_config_uses_a_control_path_and_known_hosts(tb):
    text = plan.ssh_client_config(tb)
    assert "Host prod-app1 10.99.0.21" in text
    assert f"ControlPath {tb.ssh_dir}/cm-%C" in text
    assert "StrictHostKeyChecking yes" in text


def test_env_file_round_trips(tb, tmp_path):
    path = tmp_path / "env"
    path.write_text(plan.env_file(tb, {"staging": "a b'c", "production": "x"}))
    values = read_env_file(path)
    assert values["CERNIQ_TARGET"] == "testbed"
    assert values["CERNIQ_TESTBED_STAGING_DB_PASSWORD"] == "a b'c"
    assert values["CERNIQ_TESTBED_DIR"] == str(tb.dir)
