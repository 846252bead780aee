"""Validation of user input shared by every procedure: refuse before any connection."""

import re

from cerniq_ops.errors import BadInput

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?\Z", re.ASCII)  # \Z: no trailing newline


def validate_version(version: str | None) -> str:
    """A release tag like v1.4.2 or v1.5.0-rc.1; anything else (e.g. `1.2.3; rm -rf /`) refused."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadInput(f"invalid version {version!r}: expected a tag like v1.4.2 or v1.5.0-rc.1")
    return version
