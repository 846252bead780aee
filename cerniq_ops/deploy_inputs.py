"""Validation of user input shared by every procedure: refuse before any connection."""

from __future__ import annotations

import re

from cerniq_ops.errors import BadInput
from cerniq_ops.settings import HostSpec

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


def batches(items: list[HostSpec], spec: str | int | None) -> list[list[HostSpec]]:
    """Split hosts into waves: `1` (one at a time), `2`, `50%`; None = all at once."""
    if spec in (None, "", "all", "100%"):
        return [items] if items else []
    text = str(spec)
    try:
        if text.endswith("%"):
            percent = int(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            size = max(1, (len(items) * percent) // 100)
        else:
            size = int(text)
            if size < 1:
                raise ValueError
    except ValueError:
        raise BadInput(
            f"invalid --batch {spec!r}: a host count like 1 or a percentage like 50%"
        ) from None
    return [items[i : i + size] for i in range(0, len(items), size)]
