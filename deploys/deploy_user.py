"""The deploy user every procedure logs in as (`ssh_user`): key login only, in GROUPS."""

from pyinfra.api import deploy
from pyinfra.operations import files, server

from deploys.data import setting


@deploy("deploy user")
def deploy_user(public_keys: list[str], groups: list[str]):
    user = setting("ssh_user")
    home = f"/home/{user}"
    server.user(
        name=f"user {user}",
        user=user,
        home=home,
        shell="/bin/bash",
        groups=groups,
        public_keys=public_keys,
        delete_keys=True,  # only the keys of the settings log in as the deploy user
    )
    # 711: commands run as the cluster owner (sudo -u postgres) start in this folder
    files.directory(name=f"folder {home}", path=home, user=user, group=user, mode="711")
    app_root(user)


def app_root(user: str) -> None:
    """`app_root`, the deploy user's, with the audit log every procedure appends to (created
    here so a procedure connected as the setup user never makes it someone else's)."""
    root = setting("app_root")
    files.directory(name=f"folder {root}", path=root, user=user, group=user, mode="755")
    files.file(
        name=f"{root}/audit.log", path=f"{root}/audit.log", user=user, group=user, mode="644"
    )
