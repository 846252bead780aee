"""An app host's markers: one-line files under app_root saying what it runs (current-version,
previous-version) and, with blue-green, which color serves (active-env). Each is replaced in
one rename (deploys.operations.atomic_file): `invoke verify`, a rollback or a concurrent
reader never meets half a marker."""

from pyinfra import host
from pyinfra.api import deploy

from deploys.operations import atomic_file


@deploy("cerniq markers")
def markers(values: dict[str, str]):
    """VALUES: marker name -> its value, written in this order (put `current-version` last:
    it says the host is done). A marker that already says it is not touched."""
    root = host.data.cerniq["app_root"]
    for name, value in values.items():
        path = f"{root}/{name}"
        atomic_file(name=path, path=path, content=value + "\n", mode="644")
