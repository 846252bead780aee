"""Validation of user input shared by every procedure: refuse before any connection."""

import re

from cerniq_ops.errors import BadInput

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?\Z", re.ASCII)  # \Z: no trailing newline


def validate_version(version: str | None) -> str:
    """A release tag like v1.4.2 or v1.5.0-rc.1; anything else (e.g. `1.2.3; rm -rf /`) refused."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadInput(f"invalid version {version!r}: expected a tag like v1.4.2 or v1.5.0-rc.1")
    return version


def number(
    option: str, value: object, *, kind: type = float, minimum: float = 0, default: float = 0
) -> float | int:
    """An option's number (KIND: int or float), at least MINIMUM, DEFAULT when not given;
    BadInput naming the option. (Tasks default such options to None: invoke would otherwise
    convert the text itself and fail with a traceback.)"""
    if value is None:
        return kind(default)
    what = "a whole number" if kind is int else "a number"
    try:
        parsed = kind(str(value).strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed != parsed or parsed < minimum:  # parsed != parsed: NaN
        raise BadInput(f"invalid --{option} {value!r}: expected {what} >= {minimum:g}")
    return parsed
