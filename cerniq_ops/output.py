"""The single place output is produced: every line a user, a log or a file sees passes redact().

Secret values are registered when settings read them (Settings.secret); anything printed,
written to the audit log or sent to Slack goes through redact() first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

REDACTED = "***"
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redact_obj(obj: Any) -> Any:
    """A JSON-able object with every secret value replaced, at any depth."""
    return json.loads(redact(json.dumps(obj, default=str)))


def say(line: str = "", *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(redact(line) + "\n")  # one write: lines of hosts rolled at once never mix
    stream.flush()


def emit_json(obj: Any) -> None:
    say(json.dumps(redact_obj(obj), indent=2, sort_keys=True))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain fixed-width text table (pure: returns the text)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
