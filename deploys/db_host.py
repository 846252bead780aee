"""The environment's db host: PostgreSQL from Debian's packages, listening on the host's
address at `postgres_port`, the app's role and database, pg_hba for exactly the app hosts and
`db_clients`, and what backups need: `backup_dir` and the deploy user's one sudo rule
(SUDOERS: its text; LISTEN: address and port, Settings.db_conninfo's)."""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, postgres, systemd

from cerniq_ops.access import SUDOERS_FILE
from deploys.config_files import pg_hba, postgres_conf
from deploys.data import changed, setting
from deploys.facts import RolePassword, scram_matches
from deploys.packages import packages

PACKAGES = ["postgresql", "sudo"]  # sudo: for the deploy user's rule


def cluster() -> tuple[str, str]:
    """(config folder, systemd unit) of Debian's cluster for the version of `pg_bin_dir`
    (/usr/lib/postgresql/15/bin: /etc/postgresql/15/main, postgresql@15-main)."""
    version = setting("pg_bin_dir").rstrip("/").split("/")[-2]
    return f"/etc/postgresql/{version}/main", f"postgresql@{version}-main"


@deploy("db host")
def db_host(password: str, clients: list[str], sudoers: str, listen: tuple[str, int]):
    owner, (address, port) = setting("db_os_user"), listen
    packages(PACKAGES)
    conf_dir, unit = cluster()
    owned = {"user": owner, "group": owner}
    conf = files.put(
        name=f"{conf_dir}/conf.d/cerniq.conf",
        src=StringIO(postgres_conf(address, port)),
        dest=f"{conf_dir}/conf.d/cerniq.conf",
        mode="644",
        **owned,
    )
    hba = files.put(
        name=f"{conf_dir}/pg_hba.conf",
        src=StringIO(pg_hba(setting("db_name"), setting("db_user"), clients)),
        dest=f"{conf_dir}/pg_hba.conf",
        mode="640",
        **owned,
    )
    systemd.service(name=f"{unit} running", service=unit, running=True, enabled=True)
    systemd.service(
        name=f"{unit} restarted (address or port changed)",
        service=unit,
        restarted=True,
        _if=lambda: changed(conf),
    )
    systemd.service(
        name=f"{unit} reloaded (pg_hba changed)",
        service=unit,
        reloaded=True,
        _if=lambda: changed(hba) and not changed(conf),
    )
    # su, not sudo: as root it asks nothing, and before the first run (no postgres user yet)
    # pyinfra reads "user does not exist" as "no roles yet", so dry runs plan on bare hosts
    psql = {"psql_port": port, "_su_user": owner}
    # pyinfra sets a given password on every run: give it only when the role's is another
    verifier = host.get_fact(RolePassword, role=setting("db_user"), psql_port=port, _su_user=owner)
    postgres.role(
        name=f"role {setting('db_user')}",
        role=setting("db_user"),
        password=None if scram_matches(verifier, password) else password,
        login=True,
        createdb=True,
        **psql,
    )
    postgres.database(
        name=f"database {setting('db_name')}",
        database=setting("db_name"),
        owner=setting("db_user"),
        **psql,
    )
    user = setting("ssh_user")
    files.directory(
        name=f"folder {setting('backup_dir')}",
        path=setting("backup_dir"),
        user=user,
        group=user,
        mode="700",
    )
    files.put(name=SUDOERS_FILE, src=StringIO(sudoers), dest=SUDOERS_FILE, mode="440")
