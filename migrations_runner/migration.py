"""Migration files: `NNNN_name.py` with up(db), down(db) and an optional `transactional = False`.

Discovery is pure reading (file names, bytes, the module's syntax tree); a migration's code is
imported only when it runs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cerniq_ops.errors import BadInput

FILE_RE = re.compile(r"^(?P<version>\d+)_(?P<name>[a-z0-9_]+)\.py$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
VERSION_WIDTH = 4
TIMEOUT_RE = re.compile(r"^\d+(ms|s|min|h|d)?$")
CONCURRENT_INDEX_RE = re.compile(
    r"\bcreate\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?"
    r"(?:\"([^\"]+)\"|([a-z_][a-z0-9_$]*))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str
    transactional: bool = True
    reversible: bool = True
    statement_timeout: str | None = None  # the file's own `statement_timeout = "2h"`
    concurrent_indexes: tuple[str, ...] = ()  # built by CREATE INDEX CONCURRENTLY in up()

    @property
    def label(self) -> str:
        return f"{self.version:0{VERSION_WIDTH}d} {self.name}"

    def function(self, direction: str) -> Callable[[Any], Any]:
        """Import the file and return its `up` or `down` function."""
        module = _import(self)
        fn = getattr(module, direction, None)
        if not callable(fn):
            raise BadInput(f"{self.path} has no {direction}(db) function")
        return fn


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def module_flags(source: str, path: Path) -> tuple[bool, bool]:
    """(transactional, reversible) from a migration's source, without running it.

    `transactional` must be a literal module-level assignment; reversible = it defines down().
    """
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise BadInput(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    transactional = True
    functions = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.add(node.name)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "transactional" for t in node.targets
        ):
            if not isinstance(node.value, ast.Constant) or not isinstance(node.value.value, bool):
                raise BadInput(f"{path}:{node.lineno}: `transactional` must be True or False")
            transactional = node.value.value
    if "up" not in functions:
        raise BadInput(f"{path} has no up(db) function")
    return transactional, "down" in functions


def module_statement_timeout(source: str, path: Path) -> str | None:
    """The migration's own `statement_timeout = "2h"` (a literal at module level), or None.

    For statements that legitimately run long (index builds on big tables): it replaces the
    `migration_statement_timeout` setting for this migration only.
    """
    for node in ast.parse(source, filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "statement_timeout" for t in node.targets
        ):
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            if not isinstance(value, str) or not TIMEOUT_RE.match(value):
                raise BadInput(
                    f"{path}:{node.lineno}: `statement_timeout` must be a literal like "
                    '"30min", "2h" or "0" (no limit)'
                )
            return value
    return None


def concurrent_index_names(source: str) -> tuple[str, ...]:
    """Index names the file builds with CREATE INDEX CONCURRENTLY (what an interrupted build
    of it can leave INVALID)."""
    return tuple(dict.fromkeys(a or b for a, b in CONCURRENT_INDEX_RE.findall(source)))


def parse_file(path: Path) -> Migration:
    match = FILE_RE.match(path.name)
    if not match:
        raise BadInput(f"{path.name}: migration files are named NNNN_lower_snake_name.py")
    data = path.read_bytes()
    source = data.decode()
    transactional, reversible = module_flags(source, path)
    return Migration(
        version=int(match["version"]),
        name=match["name"],
        path=path,
        checksum=checksum(data),
        transactional=transactional,
        reversible=reversible,
        statement_timeout=module_statement_timeout(source, path),
        concurrent_indexes=concurrent_index_names(source),
    )


def discover(directory: Path) -> list[Migration]:
    """Every migration in DIRECTORY, ordered by numeric version; BadInput on duplicates."""
    if not directory.is_dir():
        raise BadInput(f"migrations directory {directory} does not exist")
    files = [p for p in directory.iterdir() if p.suffix == ".py" and p.name[:1].isdigit()]
    migrations = sorted((parse_file(p) for p in files), key=lambda m: m.version)
    for a, b in zip(migrations, migrations[1:], strict=False):
        if a.version == b.version:
            raise BadInput(f"duplicate migration version {a.version}: {a.path.name}, {b.path.name}")
    return migrations


def _import(migration: Migration) -> ModuleType:
    module_name = f"cerniq_migration_{migration.version}_{migration.name}"
    spec = importlib.util.spec_from_file_location(module_name, migration.path)
    if spec is None or spec.loader is None:
        raise BadInput(f"cannot import {migration.path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- db.new ---------------------------------------------------------------------------------
TEMPLATE = '''"""{title}."""
{flag}

def up(db):
    db.execute("""
        -- your SQL here
    """)


def down(db):
    db.execute("""
        -- undo up() here
    """)
'''

NON_TRANSACTIONAL_FLAG = (
    "\n# Runs in autocommit (CREATE INDEX CONCURRENTLY, batched data migrations): a failure can\n"
    "# leave earlier statements applied, so make each statement safe to re-run (IF NOT EXISTS).\n"
    "transactional = False\n"
)


def new_migration_file(
    existing: list[Migration], name: str, transactional: bool
) -> tuple[str, str]:
    """(file name, text) of the next migration after EXISTING (pure)."""
    if not NAME_RE.match(name):
        raise BadInput(f"migration name '{name}' must be lower_snake_case (a-z, 0-9, _)")
    version = max((m.version for m in existing), default=0) + 1
    text = TEMPLATE.format(
        title=name.replace("_", " ").capitalize(),
        flag="" if transactional else NON_TRANSACTIONAL_FLAG,
    )
    return f"{version:0{VERSION_WIDTH}d}_{name}.py", text


def create_migration(directory: Path, name: str, transactional: bool = True) -> Path:
    file_name, text = new_migration_file(discover(directory), name, transactional)
    path = directory / file_name
    with path.open("x") as f:
        f.write(text)
    return path
