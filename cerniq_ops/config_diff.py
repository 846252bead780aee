"""What a dry run shows of a config file it would change (`invoke deploy --dry-run --diff`):
a unified diff of the text, or, for a secret file (the env file, mode 600), which keys would be
added, removed or get another value: never a value."""

from __future__ import annotations

import difflib


def env_values(text: str) -> dict[str, str]:
    """`KEY=value` lines -> {KEY: value} (comments and blank lines left out)."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            found[key.strip()] = value
    return found


def secret_diff(old: str | None, new: str) -> list[str]:
    """The keys of a secret env file that change, one line each; values never shown."""
    before, after = env_values(old or ""), env_values(new)
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            lines.append(f"+ {key}=*** (added)")
        elif key not in after:
            lines.append(f"- {key} (removed)")
        elif before[key] != after[key]:
            lines.append(f"~ {key}=*** (value changed)")
    return lines


def file_diff(path: str, old: str | None, new: str, *, secret: bool) -> list[str]:
    """PATH going from OLD (None: not there yet) to NEW: diff lines, [] when it stays."""
    if old == new:
        return []
    if secret:
        return [f"{path} (secret: keys only)", *secret_diff(old, new)]
    return list(
        difflib.unified_diff(
            (old or "").splitlines(),
            new.splitlines(),
            f"{path} (on the host)" if old is not None else "/dev/null",
            f"{path} (planned)",
            n=1,
            lineterm="",
        )
    )
