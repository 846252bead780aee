"""The documentation gate (seed 14.1, 14.2) on the app repository: a new service (a new folder
under the service root) needs its README, configuration guide and runbook; a user-facing change
needs a CHANGELOG entry; every relative link in the docs resolves. Rules: team.yml `docs`.

`gaps` and `broken_links` are pure; `check` reads git (the branch's changes since its merge base
with BASE, the trees of both ends) and the Markdown files of HEAD's work tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from cerniq_ops import app_repo
from cerniq_ops.review import matches

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
FENCE = re.compile(r"^\s*(```|~~~)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def new_services(t: dict, changed: Iterable[tuple[str, str]], at_base: set[str]) -> list[str]:
    """Service folders that gained files and did not exist at the base."""
    root = t["docs"]["service_root"].strip("/")
    names = []
    for status, path in changed:
        parts = PurePosixPath(path).parts
        if status != "D" and len(parts) > 2 and parts[0] == root and parts[1] not in at_base:
            names.append(parts[1])
    return sorted(set(names))


def gaps(
    t: dict,
    changed: list[tuple[str, str]],
    at_base: set[str],
    exists: Callable[[str], bool],
) -> list[str]:
    """What the documentation rules miss, one line each."""
    rules, found = t["docs"], []
    for name in new_services(t, changed, at_base):
        for what, pattern in rules["new_service_requires"].items():
            path = pattern.format(name=name)
            if not exists(path):
                found.append(f"new service {name!r} needs its {what} ({path})")
    touched = [p for s, p in changed if s != "D"]
    facing = [p for p in touched if any(matches(g, p) for g in rules["user_facing"])]
    if facing and rules["changelog"] not in touched:
        shown = ", ".join(facing[:3]) + (f" and {len(facing) - 3} more" if len(facing) > 3 else "")
        found.append(f"user-facing change ({shown}) needs an entry in {rules['changelog']}")
    return found


def link_targets(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline, image and reference link outside code fences."""
    result, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        line_wo_code = re.sub(r"`[^`]*`", "", line)
        for rx in (LINK, IMAGE):
            result += [(number, m.group(1)) for m in rx.finditer(line_wo_code)]
        ref = REFERENCE.match(line_wo_code)
        if ref:
            result.append((number, ref.group(1)))
    return result


def broken_links(text: str, md_path: str, exists: Callable[[str], bool]) -> list[str]:
    """Relative links of the Markdown file MD_PATH (repo-relative) whose target is missing."""
    broken = []
    base = PurePosixPath(md_path).parent
    for number, target in link_targets(text):
        if SCHEME.match(target) or target.startswith(("#", "//")):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path:
            continue
        resolved = _normalize(
            PurePosixPath(path.lstrip("/")) if path.startswith("/") else base / path
        )
        if resolved is None or not exists(resolved):
            broken.append(f"{md_path}:{number}: broken link {target}")
    return broken


def _normalize(path: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None  # outside the repository
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def check(t: dict, root: Path, base: str) -> list[str]:
    changed = app_repo.changed_files(root, base)
    service_root = t["docs"]["service_root"].strip("/")
    merge_base = app_repo.git(root, "merge-base", base, "HEAD").strip()
    at_base = app_repo.tree_paths(root, merge_base, service_root)
    found = gaps(t, changed, at_base, lambda p: app_repo.exists_at(root, "HEAD", p))

    def on_disk(p: str) -> bool:
        return (root / p).exists()

    for folder in t["docs"].get("link_roots", ["docs"]):
        for md in sorted((root / folder).rglob("*.md")):
            rel = md.relative_to(root).as_posix()
            found += broken_links(md.read_text(errors="replace"), rel, on_disk)
    return found
