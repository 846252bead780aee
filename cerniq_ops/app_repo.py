"""The app's git repository as the team procedures see it: files we write into it (written only
when their content differs, so a re-run changes nothing) and what a branch changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cerniq_ops.errors import BadInput


def repo_dir(given: str | None, default: str | None) -> Path:
    """The app repository folder: GIVEN (--repo, relative to the current folder), else DEFAULT
    (team.yml app_repo, relative to the project); BadInput when it is not a git work tree."""
    from cerniq_ops.settings import PROJECT_DIR

    if given:
        root = Path(given).resolve()
    elif default:
        root = (PROJECT_DIR / default).resolve()
    else:
        raise BadInput("no app repository: pass --repo PATH or set app_repo in team.yml")
    if not root.is_dir():
        raise BadInput(f"app repository {root} does not exist; pass --repo PATH")
    if not (root / ".git").exists():
        raise BadInput(f"{root} is not a git repository; pass --repo PATH to the app's checkout")
    return root


def write_if_changed(root: Path, relative: str, text: str) -> bool:
    """Write ROOT/RELATIVE atomically when its content differs; True when it changed."""
    target = root / relative
    if target.exists() and target.read_text() == text:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return True


def git(root: Path, *args: str) -> str:
    r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise BadInput(f"git {' '.join(args)} failed in {root}: {r.stderr.strip()[:200]}")
    return r.stdout


def changed_files(root: Path, base: str) -> list[tuple[str, str]]:
    """(status letter, path) of what HEAD changed since its merge base with BASE (A, M, D, R)."""
    if not exists_at(root, base, ""):
        raise BadInput(f"unknown base {base!r} in {root}; pass --base REF (a branch, tag or sha)")
    out = git(root, "diff", "--name-status", "--no-renames", f"{base}...HEAD")
    rows = []
    for line in out.splitlines():
        status, _, path = line.partition("\t")
        if path:
            rows.append((status[:1], path))
    return rows


def tree_paths(root: Path, ref: str, folder: str) -> set[str]:
    """The entries directly under FOLDER at REF (names only)."""
    out = (
        git(root, "ls-tree", "--name-only", f"{ref}:{folder}")
        if exists_at(root, ref, folder)
        else ""
    )
    return set(out.split())


def exists_at(root: Path, ref: str, path: str) -> bool:
    """Whether PATH (file or folder) exists in REF's tree."""
    r = subprocess.run(
        ["git", "-C", str(root), "cat-file", "-e", f"{ref}:{path}"], capture_output=True
    )
    return r.returncode == 0
