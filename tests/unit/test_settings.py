import pytest

from cerniq_ops import settings
from cerniq_ops.errors import BadInput
from cerniq_ops.output import redact

pytestmark = pytest.mark.unit


def test_seed_defaults_are_the_settings_of_every_environment():
    for env in settings.ENVIRONMENTS:
        s = settings.load(env, target="real")
        assert (s.health_port, s.blue_port, s.green_port) == (64000, 64001, 64002)
        assert (s.postgres_port, s.redis_port) == (64032, 64039)
        assert s.app_root == "/opt/cerniq" and s.backup_dir == "/backup"
        assert (s.health_retries, s.health_interval) == (5, 5.0)
        assert (s.bluegreen_health_retries, s.bluegreen_health_interval) == (30, 2.0)
        assert s.disk_warn_percent == 80


def test_environment_layers_override_all():
    prod = settings.load("production", target="real")
    staging = settings.load("staging", target="real")
    assert prod.public_url == "https://app.cerniq.app"
    assert staging.public_url == "https://staging.cerniq.app"
    assert prod.confirm_phrase == "DEPLOY PRODUCTION" and staging.confirm_phrase is None
    assert [h.name for h in prod.app_hosts] == ["app1.cerniq.app", "app2.cerniq.app"]
    assert prod.primary_host.name == "app1.cerniq.app"
    assert prod.db_host.name == "db1.cerniq.app"


@pytest.mark.parametrize("env", ["nope", "", None, "prod", "Production"])
def test_unknown_environment_names_the_choices(env):
    with pytest.raises(BadInput, match="choose one of: staging, production"):
        settings.load(env)


def test_unknown_target_is_refused(monkeypatch):
    monkeypatch.setenv("CERNIQ_TARGET", "cloud")
    with pytest.raises(BadInput, match="unknown CERNIQ_TARGET 'cloud'"):
        settings.load("staging")


def test_testbed_target_without_a_testbed_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("CERNIQ_TESTBED_DIR", str(tmp_path))
    with pytest.raises(BadInput, match="invoke testbed.up"):
        settings.load("staging", target="testbed")


def test_a_typo_in_group_data_is_an_error(tmp_path):
    (tmp_path / "group_data").mkdir()
    (tmp_path / "inventories").mkdir()
    real = settings.PROJECT_DIR / "group_data"
    (tmp_path / "group_data" / "all.py").write_text((real / "all.py").read_text())
    (tmp_path / "group_data" / "staging.py").write_text("public_ur = 'x'\n")
    (tmp_path / "inventories" / "staging.py").write_text("app_servers = ['a']\n")
    with pytest.raises(BadInput, match="unknown setting\\(s\\) public_ur"):
        settings.load("staging", target="real", project_dir=tmp_path)


def test_secrets_come_from_the_environment_and_are_redacted(monkeypatch):
    s = settings.load("staging", target="real")
    monkeypatch.delenv("CERNIQ_STAGING_DB_PASSWORD", raising=False)
    with pytest.raises(BadInput, match="set the environment variable CERNIQ_STAGING_DB_PASSWORD"):
        s.require_secret("db_password_env")
    monkeypatch.setenv("CERNIQ_STAGING_DB_PASSWORD", "hunter2-very-secret")
    assert s.require_secret("db_password_env") == "hunter2-very-secret"
    view = str(s.public_view())
    assert "hunter2-very-secret" not in view
    assert "CERNIQ_STAGING_DB_PASSWORD (set)" in view
    assert redact("dsn password=hunter2-very-secret host=x") == "dsn password=*** host=x"


def test_db_conninfo_points_at_the_primary_db_host():
    info = settings.load("production", target="real").db_conninfo("pw")
    assert info["host"] == "db1.cerniq.app" and info["port"] == 64032
    assert (info["dbname"], info["user"], info["password"]) == ("cerniq", "c3rn1q", "pw")


def test_overrides_from_the_environment_are_typed(monkeypatch):
    monkeypatch.setenv("CERNIQ_OVERRIDE_GITHUB_API", "http://127.0.0.1:9")
    monkeypatch.setenv("CERNIQ_OVERRIDE_HEALTH_RETRIES", "7")
    monkeypatch.setenv("CERNIQ_OVERRIDE_SERVICES", "api, web")
    s = settings.load("staging", target="real")
    assert (s.github_api, s.health_retries, s.services) == ("http://127.0.0.1:9", 7, ["api", "web"])


def test_bad_overrides_are_one_clear_error(monkeypatch):
    monkeypatch.setenv("CERNIQ_OVERRIDE_HEALTH_RETRIES", "many")
    with pytest.raises(BadInput, match="CERNIQ_OVERRIDE_HEALTH_RETRIES='many' is not a valid int"):
        settings.load("staging", target="real")
    monkeypatch.delenv("CERNIQ_OVERRIDE_HEALTH_RETRIES")
    monkeypatch.setenv("CERNIQ_OVERRIDE_NOPE", "1")
    with pytest.raises(BadInput, match="unknown setting in CERNIQ_OVERRIDE_NOPE"):
        settings.load("staging", target="real")
