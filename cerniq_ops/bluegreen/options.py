"""The options of `invoke bluegreen.*` (the color, canary steps, pause, scale-down delay,
analysis window) and the settings they default to, checked before anything connects.
"""

from __future__ import annotations

from collections.abc import Mapping

from cerniq_ops.bluegreen.colors import COLORS
from cerniq_ops.errors import BadInput
from cerniq_ops.settings import Settings


def canary_steps(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    """`10,50,100` -> [10, 50, 100]: increasing percentages; 100 is appended when missing."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        weights = [int(str(w).strip()) for w in items if str(w).strip()]
    except ValueError:
        raise BadInput(f"invalid --steps {spec!r}: percentages like 10,50,100") from None
    if not weights or any(not 0 < w <= 100 for w in weights) or weights != sorted(set(weights)):
        raise BadInput(f"invalid --steps {spec!r}: increasing percentages in 1..100, e.g. 10,50")
    return weights if weights[-1] == 100 else [*weights, 100]


def _seconds(value, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"invalid {name} {value!r}: a number of seconds >= 0") from None
    if not seconds >= 0 or seconds == float("inf"):  # also refuses nan
        raise BadInput(f"invalid {name} {value!r}: a number of seconds >= 0")
    return seconds


def validate_options(options: Mapping, s: Settings) -> dict:
    """Every option of `invoke bluegreen.*` (or the setting it defaults to), checked and parsed:
    the values to run with. BadInput (exit 2) names the first wrong one; nothing connects first.
    """
    to = options.get("to")
    if to is not None and to not in COLORS:
        raise BadInput(f"invalid --to {to!r}: choose blue or green")
    parsed: dict = {}
    if options.get("steps") is not None:
        parsed["steps"] = canary_steps(options["steps"])
    else:
        canary_steps(s.bluegreen_canary_steps)  # a bad override fails here, not mid-canary
    for name, setting in (
        ("pause", "bluegreen_canary_pause"),
        ("delay", "bluegreen_scale_down_delay"),
        ("analysis_seconds", "bluegreen_analysis_seconds"),
    ):
        if options.get(name) is not None:
            parsed[name] = _seconds(options[name], "--" + name.replace("_", "-"))
        else:
            _seconds(getattr(s, setting), f"setting {setting}")
    return parsed
