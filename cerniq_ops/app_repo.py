"""The app's git repository as the team procedures see it: files we write into it (written only
when their content differs, so a re-run changes nothing) and what a branch changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cerniq_ops.errors import BadInput


def repo_dir(given: str | None, default: str | None) -> Path:
    """The app repository folder: GIVEN (--repo, relative to the current folder), else
    $CERNIQ_APP_REPO (the testbed's env file sets it to its checkout), else DEFAULT (team.yml
    app_repo, relative to the project); BadInput when it is not a git work tree."""
    from cerniq_ops.settings import PROJECT_DIR

    if given:
        root = Path(given).resolve()
    elif os.environ.get("CERNIQ_APP_REPO"):
        root = Path(os.environ["CERNIQ_APP_REPO"]).resolve()
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


def changed_files(root: Path, base: str, head: str = "HEAD") -> list[tuple[str, str]]:
    """(status letter, path) of what HEAD changed since its merge base with BASE (A, M, D, R)."""
    if not exists_at(root, base, ""):
        raise BadInput(f"unknown base {base!r} in {root}; pass --base REF (a branch, tag or sha)")
    out = git(root, "diff", "--name-status", "--no-renames", f"{base}...{head}")
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


# -- git-flow steps (release.*, hotfix.*): reads that never fail, and idempotent writes --------
def git_ok(root: Path, *args: str) -> bool:
    """Whether `git ARGS` succeeds (a question asked of git, e.g. `merge-base --is-ancestor`)."""
    r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    return r.returncode == 0


def git_step(root: Path, *args: str) -> str:
    """`git ARGS` as a procedure step: a failure is a StepFailed (the step failed, the runner's
    hooks run), not a refusal."""
    from cerniq_ops.errors import StepFailed

    r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise StepFailed(f"git {' '.join(args)} failed in {root}: {r.stderr.strip()[:300]}")
    return r.stdout


def rev(root: Path, ref: str) -> str | None:
    """The commit REF names, or None when it names nothing."""
    r = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def is_ancestor(root: Path, ancestor: str, descendant: str) -> bool:
    return git_ok(root, "merge-base", "--is-ancestor", ancestor, descendant)


def current_branch(root: Path) -> str:
    return git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()


def dirty(root: Path) -> list[str]:
    """Tracked files with uncommitted changes (untracked files do not block a release)."""
    out = git(root, "status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in out.splitlines() if line.strip()]


def fetch(root: Path, remote: str = "origin") -> None:
    """`git fetch --prune --tags REMOTE`: BadInput when the remote cannot be reached."""
    git(root, "fetch", "--quiet", "--prune", "--tags", remote)


def remote_branches(root: Path, prefix: str, remote: str = "origin") -> list[str]:
    """Branch names (without `REMOTE/`) on REMOTE starting with PREFIX, as last fetched."""
    out = git(
        root, "for-each-ref", "--format=%(refname:strip=3)", f"refs/remotes/{remote}/{prefix}"
    )
    return sorted(out.split())


def tag_object(root: Path, tag: str) -> tuple[str, str] | None:
    """(object type, commit) of TAG here, or None: 'tag' for an annotated one."""
    kind = subprocess.run(
        ["git", "-C", str(root), "cat-file", "-t", f"refs/tags/{tag}"],
        capture_output=True,
        text=True,
    )
    if kind.returncode != 0:
        return None
    return kind.stdout.strip(), rev(root, f"refs/tags/{tag}") or ""


def remote_tag(root: Path, tag: str, remote: str = "origin") -> str | None:
    """The commit TAG points at on REMOTE (asked now, not from the last fetch), or None."""
    out = git(root, "ls-remote", "--tags", remote, f"refs/tags/{tag}", f"refs/tags/{tag}^{{}}")
    found = dict(reversed(line.split("\t")) for line in out.splitlines() if "\t" in line)
    return found.get(f"refs/tags/{tag}^{{}}") or found.get(f"refs/tags/{tag}")


def last_tag(root: Path, ref: str, pattern: str = "v[0-9]*") -> str | None:
    """The newest tag matching PATTERN reachable from REF, or None (first release)."""
    r = subprocess.run(
        ["git", "-C", str(root), "describe", "--tags", "--abbrev=0", "--match", pattern, ref],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def commits_between(root: Path, since: str | None, until: str) -> list[tuple[str, str, str]]:
    """(sha, subject, body) of the commits in UNTIL not in SINCE, oldest first, merges left out."""
    span = f"{since}..{until}" if since else until
    out = git(root, "log", "--reverse", "--no-merges", "--format=%H%x1f%s%x1f%b%x1e", span)
    rows = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if record:
            sha, subject, body = (record.split("\x1f") + ["", ""])[:3]
            rows.append((sha, subject, body.strip()))
    return rows


def show(root: Path, ref: str, path: str) -> str | None:
    """PATH's content at REF, or None when it is not there."""
    if not exists_at(root, ref, path):
        return None
    return git(root, "show", f"{ref}:{path}")
