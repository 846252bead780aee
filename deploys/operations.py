"""Operations of ours, used like pyinfra's own (`files.put`, `files.directory`).

`atomic_file` is the one way a file of ours reaches a host: the procedures' markers and
Traefik's dynamic files (cerniq_ops.hosts.write_file runs the same commands, in the middle of
a switch) and the roles' files (deploys/app.py). pyinfra's `files.put` uploads into the
destination itself: a reader (a watching Traefik, a `docker compose` of another run) can meet
a half-written file, and a run killed during the upload leaves one.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.files import File, Sha256File


def temp_path(path: str) -> str:
    """Where PATH's next content is uploaded: `.NAME.tmp-cerniq` in the same folder (one
    filesystem: the rename is atomic), a name not ending in .yml (a watching Traefik skips it)."""
    folder, name = posixpath.split(path)
    return f"{folder}/.{name}.tmp-cerniq"


def private_temp_command(folder: str, temp: str) -> str:
    """Make FOLDER, then create TEMP anew, empty and mode 600 (noclobber: never reuse one), so
    the upload fills a file nobody else can read, not even between upload and chmod."""
    q = shlex.quote
    return f"mkdir -p {q(folder)} && rm -f {q(temp)} && (umask 077 && set -C && : > {q(temp)})"


def rename_command(temp: str, path: str, mode: str, owner: str | None = None) -> str:
    """TEMP gets MODE (and OWNER, `user:group`) before it is renamed over PATH: the file is
    never, even for a moment, at PATH with another mode."""
    q = shlex.quote
    chown = f"chown {q(owner)} {q(temp)} && " if owner else ""
    return f"{chown}chmod {q(mode)} {q(temp)} && mv -f {q(temp)} {q(path)}"


def link_new_command(temp: str, path: str, mode: str) -> str:
    """TEMP gets MODE, then becomes PATH only if PATH does not exist (a hard link is created
    or refused atomically: two writers never both win); prints `created` or `exists`."""
    q = shlex.quote
    drop = f"rm -f {q(temp)}"
    return (
        f"chmod {q(mode)} {q(temp)} && if ln {q(temp)} {q(path)} 2>/dev/null; then {drop};"
        f" echo created; elif [ -e {q(path)} ]; then {drop}; echo exists; else {drop}; exit 1; fi"
    )


def up_to_date(info, digest: str | None, wanted: str, mode: str, user, group) -> bool:
    """Whether the file pyinfra's File fact describes (INFO) with sha256 DIGEST already holds
    WANTED with MODE (and USER, GROUP when given)."""
    if not info or digest != wanted or info.get("mode") != int(mode):
        return False
    return (user is None or info.get("user") == user) and (
        group is None or info.get("group") == group
    )


@operation()
def atomic_file(
    path: str, content: str, mode: str = "644", user: str | None = None, group: str | None = None
):
    """PATH holds CONTENT with MODE (octal digits, e.g. "600"; USER/GROUP when given), replaced
    in one rename (temp_path, private_temp_command, rename_command): a reader sees the old file
    or the new one; a kill leaves at most the temporary file, which the next run replaces.
    Nothing is done when the content (sha256), mode and owner already match."""
    data = content.encode()
    wanted = hashlib.sha256(data).hexdigest()
    info = host.get_fact(File, path=path)
    digest = host.get_fact(Sha256File, path=path) if info else None
    if up_to_date(info, digest, wanted, mode, user, group):
        host.noop(f"{path} is up to date")
        return
    temp = temp_path(path)
    yield private_temp_command(posixpath.dirname(path), temp)
    yield FileUploadCommand(BytesIO(data), temp)
    owner = f"{user or ''}:{group or ''}" if user or group else None
    yield rename_command(temp, path, mode, owner)
