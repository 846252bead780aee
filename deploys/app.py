"""The app's files on an app host: folders, compose files, env file, Traefik's dynamic folder.

Per-host values come from `host.data` (the inventory plus `host.data.cerniq`, the settings);
the rendered documents are passed in, built by the pure builders of cerniq_ops.compose.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

FOLDERS = ("/traefik/dynamic", "/incidents")  # under app_root (also made by the edge role)


@deploy("cerniq app files")
def app_files(documents: dict[str, tuple[str, str]]):
    """DOCUMENTS: path relative to app_root -> (text, mode). Unchanged files are not touched."""
    root = host.data.cerniq["app_root"]
    for folder in ("", *FOLDERS):
        files.directory(name=f"folder {root}{folder}", path=f"{root}{folder}", mode="755")
    for relative, (text, mode) in sorted(documents.items()):
        if int(mode, 8) & 0o077 == 0:  # a secret (.env): never in a file others can read
            # files.put writes into the destination itself (created with the login's umask),
            # so the file is first made empty with its private mode; the upload keeps it.
            files.file(name=f"private {root}/{relative}", path=f"{root}/{relative}", mode=mode)
        files.put(
            name=f"{root}/{relative}",
            src=StringIO(text),
            dest=f"{root}/{relative}",
            mode=mode,
        )
