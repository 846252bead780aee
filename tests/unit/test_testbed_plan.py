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


def test_production_can_have_up_to_eight_app_hosts_around_its_db_host(tmp_path, monkeypatch):
    four = plan.Testbed(dir=tmp_path, prefix="cqz", net="10.99.0", production_app_hosts=4)
    prod = [(h.name, h.ip) for h in four.hosts if h.env == "production"]
    assert prod == [
        ("prod-lb", "10.99.0.20"),
        ("prod-app1", "10.99.0.21"),
        ("prod-app2", "10.99.0.22"),
        ("prod-db", "10.99.0.23"),
        ("prod-app3", "10.99.0.24"),
        ("prod-app4", "10.99.0.25"),
    ]
    assert "'prod-app4'" in plan.inventory_module(four, "production")
    assert "'prod-lb'" not in plan.inventory_module(four, "production")  # testbed's, not ours
    assert plan.haproxy_config(four, "production").endswith(
        "  server prod-app1 10.99.0.21:64000 check\n"
        "  server prod-app2 10.99.0.22:64000 check\n"
        "  server prod-app3 10.99.0.24:64000 check\n"
        "  server prod-app4 10.99.0.25:64000 check\n"
    )
    assert "  bind 10.99.0.20:80\n" in plan.haproxy_config(four, "production")
    assert "export CERNIQ_TESTBED_PRODUCTION_APP_HOSTS=4" in plan.env_file(four, {})
    names = [four.bridge] + [n for h in four.hosts for n in four.veth(h)]
    assert len(set(names)) == len(names)
    for bad in (0, 9):
        with pytest.raises(ValueError, match="production app hosts: 1 to 8"):
            plan.Testbed(dir=tmp_path, production_app_hosts=bad)
    monkeypatch.setenv("CERNIQ_TESTBED_PRODUCTION_APP_HOSTS", "1")
    assert [h.name for h in plan.Testbed.from_env(tmp_path).hosts if h.role == "app"] == [
        "staging-app1",
        "prod-app1",
    ]


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
    assert prod.public_url == "http://10.99.0.20:80"  # its load balancer
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


# -- the deploy user ---------------------------------------------------------------------------
MACHINE_PASSWD = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\nu:x:2000:2000::/home/u:/bin/sh\n"  # noqa: E501
MACHINE_GROUP = "root:x:0:\ndocker:x:112:\nsudo:x:27:ana\nu:x:2000:\nx:x:2001:\n"


def test_deploy_gets_the_first_id_free_as_uid_and_gid():
    assert plan.free_id(MACHINE_PASSWD, MACHINE_GROUP) == 2002
    assert plan.free_id("", "") == 2000


def test_account_files_add_deploy_to_the_machines_own():
    passwd = plan.passwd_file(MACHINE_PASSWD, 2002)
    assert (
        passwd
        == MACHINE_PASSWD + "deploy:x:2002:2002:cerniq-ops deploy user:/home/deploy:/bin/bash\n"
    )  # noqa: E501
    assert plan.passwd_file(passwd, 2002) == passwd  # never twice
    group = plan.group_file(MACHINE_GROUP, 2002, ("docker",))
    assert (
        group
        == "root:x:0:\ndocker:x:112:deploy\nsudo:x:27:ana\nu:x:2000:\nx:x:2001:\ndeploy:x:2002:\n"
    )  # noqa: E501
    assert plan.group_file("sudo:x:27:ana\n", 9, ("sudo",)) == "sudo:x:27:ana,deploy\ndeploy:x:9:\n"
    assert plan.shadow_file("root:*:1::::::\n") == "root:*:1::::::\ndeploy:*:19000:0:99999:7:::\n"


def test_deploy_is_in_the_docker_group_only_where_dockerd_runs(tb):
    assert plan.deploy_groups(tb.host("prod-app1")) == ("docker",)
    assert plan.deploy_groups(tb.host("prod-db")) == ()


def test_the_sudo_rule_is_on_db_hosts_only_and_names_exactly_the_cluster_owners_programs(tb):
    programs = ["/pg/bin/pg_dump", "/pg/bin/pg_restore", "/pg/bin/psql"]
    text = plan.sudoers_file(tb.host("prod-db"), programs)
    assert text is not None
    assert text.splitlines()[-1] == (
        "deploy ALL=(postgres) NOPASSWD: /pg/bin/pg_dump, /pg/bin/pg_restore, /pg/bin/psql"
    )
    assert plan.sudoers_file(tb.host("prod-app1"), programs) is None
    assert plan.sudoers_file(tb.host("registry"), programs) is None


def test_testbed_pg_bin_is_the_settings_pg_bin_dir(tb):
    s = settings.load("production", target="real")
    assert s.pg_bin_dir == plan.PG_BIN and s.redis_port == plan.REDIS_PORT
    assert s.ssh_user == plan.DEPLOY_USER


def test_boot_script_gives_deploy_its_home_key_and_folders(tb):
    script = plan.inner_script(tb, tb.host("prod-app1"), "", 64032)
    for inside in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/sudoers.d", "/home"):
        assert f" {inside}\n" in script
    assert (
        'install -m 600 -o deploy -g deploy "$HD/authorized_keys" /home/deploy/.ssh/authorized_keys'
        in script
    )
    assert "chown deploy:deploy /opt/cerniq /backup" in script
    assert "redis-server" not in script
    db = plan.inner_script(tb, tb.host("prod-db"), "", 64032)
    assert "runuser -u redis -- /usr/bin/redis-server /run/redis/redis.conf" in db


def test_redis_listens_on_the_db_hosts_address_with_a_password_and_no_disk(tb):
    conf = plan.redis_conf(tb.host("prod-db"), 'p@#/:"x\\')
    assert conf.splitlines()[:4] == [
        "bind 10.99.0.23",
        "port 64039",
        "protected-mode yes",
        'requirepass "p@#/:\\"x\\\\"',
    ]
    assert 'save ""' in conf and "appendonly no" in conf


def test_ssh_config_logs_in_as_deploy_and_root_only_through_the_root_alias(tb):
    text = plan.ssh_client_config(tb)
    block = text.split("Host prod-db 10.99.0.23\n", 1)[1].split("\n\n", 1)[0]
    assert "  User deploy" in block.splitlines()
    root = text.split("Host prod-db-root\n", 1)[1].split("\n\n", 1)[0]
    assert "  User root" in root.splitlines() and "  HostName 10.99.0.23" in root.splitlines()
    assert "AuthorizedKeysFile .ssh/authorized_keys" in plan.sshd_config(tb, tb.host("prod-db"))


def test_generated_inventory_connects_as_deploy_with_strict_host_keys(tb):
    text = plan.inventory_module(tb, "production")
    assert "'ssh_user': 'deploy'" in text and "'root'" not in text
    assert "'ssh_strict_host_key_checking': 'yes'" in text
    assert "CERNIQ_TESTBED_PRODUCTION_REDIS_PASSWORD" in plan.group_data_module(tb, "production")
