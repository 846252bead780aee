"""Typed confirmations (seed: "Type 'DEPLOY PRODUCTION' to continue"): at an interactive
prompt, or given with --confirm when nothing is interactive (CI). No silent path."""

from __future__ import annotations

import sys

from cerniq_ops.errors import BadInput


def require(phrase: str, given: str | None, what: str) -> str:
    """Return how it was confirmed; BadInput when the phrase is missing or wrong."""
    if given is not None:
        if given != phrase:
            raise BadInput(f"{what} needs --confirm {phrase!r}; got {given!r}")
        return "confirmed with --confirm"
    if not sys.stdin.isatty():
        raise BadInput(f"{what} needs confirmation: pass --confirm {phrase!r} (not interactive)")
    sys.stderr.write(f"\n  {what}\n  Type '{phrase}' to continue: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != phrase:
        raise BadInput(f"{what} cancelled: the typed confirmation did not match")
    return "confirmed at the prompt"
