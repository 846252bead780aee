"""Secrets and trust on real hosts, as pure builders: the sudo rule and `sudo -l`, URL-encoded
connection strings, strict host keys, private uploads, identifiers and versions at load."""

import dataclasses
import urllib.parse

import psycopg.conninfo
import pytest

from cerniq_ops import access, compose, doctor, hosts, settings
from cerniq_ops.deploy_inputs import validate_version
from cerniq_ops.errors import BadInput
from deploys import operations

pytestmark = pytest.mark.unit
PG = "/usr/lib/postgresql/15/bin"
PROGRAMS = [f"{PG}/pg_dump", f"{PG}/pg_restore", f"{PG}/psql"]
LISTING = f"""Matching Defaults entries for deploy on prod-db:
    env_reset, mail_badpass, use_pty

User deploy may run the following commands on prod-db:
    (postgres) NOPASSWD: {PG}/pg_dump, {PG}/pg_restore,
        {PG}/psql
"""


@pytest.fixture
def prod():
    return settings.load("production", target="real")


def test_the_sudo_rule_is_one_line_naming_exactly_the_programs():
    assert access.sudo_rule("deploy", "postgres", PROGRAMS) == (
        f"deploy ALL=(postgres) NOPASSWD: {PG}/pg_dump, {PG}/pg_restore, {PG}/psql"
    )


def test_sudo_listing_is_read_into_grants_including_continuation_lines():
    grants = access.parse_sudo_list(LISTING)
    assert grants == [access.Grant("postgres", p, True) for p in PROGRAMS]
    assert access.sudo_rule_problems(grants, "postgres", PROGRAMS) == ([], [])


def test_a_missing_or_broader_rule_is_named():
    assert access.parse_sudo_list("Sorry, user deploy may not run sudo on prod-db.\n") == []
    missing, broader = access.sudo_rule_problems([], "postgres", PROGRAMS)
    assert missing == PROGRAMS and broader == []
    wide = access.parse_sudo_list(
        "User deploy may run the following commands on h:\n    (ALL : ALL) ALL\n"
        f"    (postgres) {PG}/psql\n"
    )
    assert wide == [
        access.Grant("ALL", "ALL", False),
        access.Grant("postgres", f"{PG}/psql", False),
    ]
    missing, broader = access.sudo_rule_problems(wide, "postgres", PROGRAMS)
    assert missing == PROGRAMS  # a password-prompting rule is no use to a procedure
    assert broader == ["(ALL) ALL"]


def test_doctor_reports_a_missing_sudo_rule_with_the_sudoers_line_as_the_fix(prod):
    f = doctor.sudo_finding(prod, "db1", False, "sudo: a password is required")
    assert (f.check, f.status) == ("sudo", "FAIL")
    assert f.detail == (
        "deploy may not run pg_dump, pg_restore, psql as postgres without a password "
        "(sudo -n -l: sudo: a password is required)"
    )
    assert f.fix.startswith(
        "`invoke setup --env production` writes "
        f"`deploy ALL=(postgres) NOPASSWD: {PG}/pg_dump, {PG}/pg_restore, {PG}/psql` "
        "to /etc/sudoers.d/cerniq-deploy on db1"
    )
    assert doctor.sudo_finding(prod, "db1", True, LISTING).status == "ok"


def test_account_problems_name_root_the_docker_group_and_owners():
    assert (
        access.account_problems("deploy", "deploy", ["deploy", "docker"], {"/o": "deploy"}, True)
        == []
    )  # noqa: E501
    assert access.account_problems(
        "root", "deploy", ["root"], {"/o": "root", "/b": None}, True
    ) == [
        "logged in as root, not deploy (procedures never use root)",
        "root is not in the docker group (cannot reach dockerd's socket)",
        "/o is owned by root, not deploy",
        "/b is missing",
    ]
    assert access.account_problems("deploy", "deploy", ["deploy"], {}, False) == []


def test_redis_answering_pong_or_noauth_is_a_redis():
    assert access.redis_reply_problem("h:1", "+PONG\r") is None
    assert access.redis_reply_problem("h:1", "-NOAUTH Authentication required.") is None
    assert access.redis_reply_problem("h:1", "bash: connect: Connection refused") == (
        "no Redis answers at h:1: bash: connect: Connection refused"
    )


def test_doctor_speaks_resp_and_reads_redis_replies(prod):
    assert doctor.redis_request("p w") == b"*2\r\n$4\r\nAUTH\r\n$3\r\np w\r\n*1\r\n$4\r\nPING\r\n"
    assert doctor.redis_request(None) == b"*1\r\n$4\r\nPING\r\n"
    ok = doctor.redis_finding(prod, "db1", "db1:64039", ["+OK", "+PONG"])
    assert (ok.status, ok.detail) == ("ok", "db1:64039 answers PING with its password")
    wrong = doctor.redis_finding(
        prod, "db1", "db1:64039", ["-WRONGPASS invalid password", "-NOAUTH x"]
    )  # noqa: E501
    assert wrong.detail == "db1:64039 refused the password in CERNIQ_PRODUCTION_REDIS_PASSWORD"
    unset = doctor.redis_finding(prod, "db1", "db1:64039", ["-NOAUTH Authentication required."])
    assert unset.fix == "export CERNIQ_PRODUCTION_REDIS_PASSWORD"
    down = doctor.redis_finding(prod, "db1", "db1:64039", None, "Connection refused")
    assert down.status == "FAIL" and "start redis-server on db1" in down.fix


# -- URLs --------------------------------------------------------------------------------------
HARD = "p@ss#w/rd:%20x?"


def test_database_url_encodes_every_character_a_url_reserves():
    url = compose.database_url("c3rn1q", HARD, "10.0.0.5", 64032, "cerniq")
    assert url == "postgresql://c3rn1q:p%40ss%23w%2Frd%3A%2520x%3F@10.0.0.5:64032/cerniq"
    parsed = urllib.parse.urlsplit(url)
    assert urllib.parse.unquote(parsed.password) == HARD
    assert (parsed.hostname, parsed.port) == ("10.0.0.5", 64032)
    info = psycopg.conninfo.conninfo_to_dict(url)  # libpq's own reading of it
    assert (info["password"], info["user"], info["dbname"]) == (HARD, "c3rn1q", "cerniq")
    assert compose.database_url("u", "", "::1", 5, "d") == "postgresql://u@[::1]:5/d"


def test_redis_url_carries_the_encoded_password_for_the_default_user():
    assert compose.redis_url(HARD, "10.0.0.5", 64039) == (
        "redis://:p%40ss%23w%2Frd%3A%2520x%3F@10.0.0.5:64039/0"
    )
    assert compose.redis_url("", "10.0.0.5", 64039) == "redis://10.0.0.5:64039/0"


def test_env_file_points_the_app_at_the_db_hosts_postgres_and_redis(prod, monkeypatch):
    monkeypatch.setenv("CERNIQ_PRODUCTION_REDIS_PASSWORD", "r@:/#")
    text = compose.env_file(prod, "v1.0.0", HARD)
    assert text.splitlines() == [
        "CERNIQ_ENV=production",
        "CERNIQ_VERSION=v1.0.0",
        "DATABASE_URL=postgresql://c3rn1q:p%40ss%23w%2Frd%3A%2520x%3F@db1.cerniq.app:64032/cerniq",
        "REDIS_URL=redis://:r%40%3A%2F%23@db1.cerniq.app:64039/0",
    ]
    assert "REDIS_URL=redis://:x@db1.cerniq.app:64039/0" in compose.env_file(prod, "v1", "", "x")


# -- host keys and uploads -----------------------------------------------------------------
def test_every_session_checks_host_keys_strictly_whatever_the_inventory_says(prod):
    spec = dataclasses.replace(prod.hosts[0], data={"ssh_strict_host_key_checking": "accept-new"})
    inventory = hosts.build_inventory(prod, [spec])
    data = inventory.get_host(spec.name).data
    assert data.ssh_strict_host_key_checking == "yes"
    assert data.ssh_known_hosts_file == prod.known_hosts_file
    assert not prod.known_hosts_file.startswith("~")


def test_a_changed_host_key_is_one_line_that_says_what_to_do():
    line = hosts.connect_failure(
        "production", "app1", "SSH host key error (Host key for 10.0.0.1 does not match.)", "/k"
    )
    assert line.startswith("host key of app1 does not match /k: refusing to connect")
    assert "`invoke doctor --env production --trust`" in line and "\n" not in line
    unknown = hosts.connect_failure("staging", "a", "SSH error (StrictPolicy: No host key)", "/k")
    assert unknown.startswith("host key of a unknown (not in /k): refusing to connect")


def test_an_upload_goes_into_a_fresh_private_file_first():
    assert operations.private_temp_command("/opt/c", "/opt/c/.env.tmp-cerniq") == (
        "mkdir -p /opt/c && rm -f /opt/c/.env.tmp-cerniq"
        " && (umask 077 && set -C && : > /opt/c/.env.tmp-cerniq)"
    )
    assert operations.temp_path("/opt/c/traefik/dynamic/active.yml") == (
        "/opt/c/traefik/dynamic/.active.yml.tmp-cerniq"  # not *.yml: Traefik skips it
    )
    assert operations.rename_command("/opt/c/.env.tmp-cerniq", "/opt/c/.env", "600") == (
        "chmod 600 /opt/c/.env.tmp-cerniq && mv -f /opt/c/.env.tmp-cerniq /opt/c/.env"
    )
    assert operations.rename_command("/o/.x.tmp-cerniq", "/o/x", "644", "deploy:") == (
        "chown deploy: /o/.x.tmp-cerniq && chmod 644 /o/.x.tmp-cerniq"
        " && mv -f /o/.x.tmp-cerniq /o/x"
    )
    assert operations.link_new_command("/o/.i.tmp-cerniq-1a", "/o/i", "640") == (
        "chmod 640 /o/.i.tmp-cerniq-1a && if ln /o/.i.tmp-cerniq-1a /o/i 2>/dev/null;"
        " then rm -f /o/.i.tmp-cerniq-1a; echo created; elif [ -e /o/i ];"
        " then rm -f /o/.i.tmp-cerniq-1a; echo exists; else rm -f /o/.i.tmp-cerniq-1a; exit 1; fi"
    )


def test_trust_records_an_unknown_key_and_never_replaces_a_changed_one():
    f, line = doctor.trust_finding("h", "10.0.0.1", "/k", ("ssh-ed25519", "AAAA"), {}, "SHA256:x")
    assert (f.status, line) == ("ok", "10.0.0.1 ssh-ed25519 AAAA")
    assert f.detail == "recorded 10.0.0.1 ssh-ed25519 SHA256:x in /k"
    f, line = doctor.trust_finding(
        "h", "10.0.0.1", "/k", ("ssh-ed25519", "AAAA"), {"ssh-ed25519": "BBBB"}, "SHA256:x"
    )
    assert (f.status, line) == ("FAIL", None) and "not replaced" in f.detail
    f, line = doctor.trust_finding(
        "h", "10.0.0.1", "/k", ("ssh-ed25519", "AAAA"), {"ssh-ed25519": "AAAA"}, "SHA256:x"
    )
    assert (f.status, line) == ("ok", None)
    assert (
        doctor.known_hosts_entry("h", 22) == "h"
        and doctor.known_hosts_entry("h", 2222) == "[h]:2222"
    )
    assert doctor.fingerprint(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


# -- input at load -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1.2.3\n", "v1.2.3\n; rm -rf /", "v１.2.3", "v1.2.3 ", None])
def test_versions_with_a_trailing_newline_or_non_ascii_digits_are_refused(version):
    with pytest.raises(BadInput, match="invalid version"):
        validate_version(version)


def test_backup_ids_with_a_trailing_newline_are_refused():
    from cerniq_ops import backup

    assert backup.check_id("20261128T231500Z-production-manual")
    with pytest.raises(BadInput):
        backup.check_id("20261128T231500Z-production-manual\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("compose_project", "cerniq; rm -rf /"),
        ("compose_project", "Cerniq"),
        ("db_name", 'cerniq"; drop'),
        ("db_name", "cerniq\n"),
        ("db_user", "c3rn1q'"),
        ("db_os_user", "postgres -c x"),
        ("app_root", "opt/cerniq"),
        ("app_root", "/opt/cerniq/../etc"),
        ("backup_dir", "/backup $(id)"),
        ("image_prefix", "cerniq/../x"),
        ("registry", "reg.example:5000/x"),
        ("migration_statement_timeout", "15min; drop"),
        ("ssh_user", "root\n"),
    ],
)
def test_settings_that_reach_shells_or_sql_are_refused_at_load_naming_the_setting(
    name, value, monkeypatch
):
    monkeypatch.setenv(f"CERNIQ_OVERRIDE_{name.upper()}", value)
    with pytest.raises(BadInput, match=f"^invalid setting {name}="):
        settings.load("staging", target="real")


def test_services_are_names():
    with pytest.raises(BadInput, match="invalid setting services"):
        settings.validate({**_defaults(), "services": ["api", "we b"]})
    settings.validate(_defaults())


def _defaults():
    s = settings.load("staging", target="real")
    return dataclasses.asdict(s)
