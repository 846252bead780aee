"""An app host's edge: Traefik's compose file (its static configuration is in the command
line there) and the dynamic folder it watches. Traefik itself is started by the procedure
that needs it (`rollout.ensure_edge`: network, `up -d`, its API answering)."""

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files

from deploys.app import FOLDERS
from deploys.data import setting


@deploy("edge")
def edge(edge_compose: str):
    root, user = setting("app_root"), setting("ssh_user")
    for folder in (f"{root}{sub}" for sub in ("/traefik", *FOLDERS)):  # parents first: theirs
        files.directory(name=f"folder {folder}", path=folder, user=user, group=user, mode="755")
    files.put(
        name=f"{root}/docker-compose.traefik.yml",
        src=StringIO(edge_compose),
        dest=f"{root}/docker-compose.traefik.yml",
        user=user,
        group=user,
        mode="644",
    )
