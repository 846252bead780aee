"""The app's files on an app host: folders, compose files, env file, Traefik's dynamic folder.

Per-host values come from `host.data` (the inventory plus `host.data.cerniq`, the settings);
the rendered documents are passed in, built by the pure builders of cerniq_ops.compose.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from deploys.operations import atomic_file

FOLDERS = ("/traefik/dynamic", "/incidents")  # under app_root (also made by the edge role)


@deploy("cerniq app files")
def app_files(documents: dict[str, tuple[str, str]]):
    """DOCUMENTS: path relative to app_root -> (text, mode). Unchanged files are not touched."""
    root = host.data.cerniq["app_root"]
    for folder in ("", *FOLDERS):
        files.directory(name=f"folder {root}{folder}", path=f"{root}{folder}", mode="755")
    for relative, (text, mode) in sorted(documents.items()):
        # in one rename: a kill or a reader never meets half a compose or env file; the env
        # file's content is uploaded into a file only its owner can read
        atomic_file(name=f"{root}/{relative}", path=f"{root}/{relative}", content=text, mode=mode)
