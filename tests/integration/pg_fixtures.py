"""Throwaway databases on the local PostgreSQL (127.0.0.1:5432) for the migration tests.

Each test gets fresh databases named cq_mig_<random>, dropped afterwards, so tests are
independent and can run in parallel. Register with `pytest_plugins = ["pg_fixtures"]`.
(PYTEST_DONT_REWRITE: test modules also import its helpers; it has no asserts.)
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

ADMIN: dict[str, Any] = {
    "host": os.environ.get("CERNIQ_TEST_PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("CERNIQ_TEST_PGPORT", "5432")),
    "user": os.environ.get("CERNIQ_TEST_PGUSER", "postgres"),
    "dbname": "postgres",
}
REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

MakeDb = Callable[..., dict[str, Any]]


@pytest.fixture
def make_db() -> Iterator[MakeDb]:
    """A factory: make_db() -> conninfo of a new empty database (all dropped at teardown)."""
    created: list[str] = []

    def make(application_name: str = "cq-mig-test") -> dict[str, Any]:
        name = f"cq_mig_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(**ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return {**ADMIN, "dbname": name, "application_name": application_name}

    yield make
    with psycopg.connect(**ADMIN, autocommit=True) as conn:
        for name in created:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_db(make_db: MakeDb) -> dict[str, Any]:
    return make_db()


def query(conninfo: dict[str, Any], text: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        cur = conn.execute(text, params)
        return cur.fetchall() if cur.description else []


def history(conninfo: dict[str, Any]) -> list[int]:
    if not query(conninfo, "SELECT to_regclass('schema_migrations')")[0][0]:
        return []
    return [r[0] for r in query(conninfo, "SELECT version FROM schema_migrations ORDER BY 1")]


def write_migration(directory: Path, file_name: str, source: str) -> Path:
    path = directory / file_name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


class Lines(list[str]):
    """A log callback that keeps every line (and can say whether some line contains TEXT)."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self)


def up_sql(*statements: str, transactional: bool = True) -> str:
    """Source of a migration whose up() executes STATEMENTS in order."""
    flag = "" if transactional else "transactional = False\n\n\n"
    return flag + "def up(db):\n" + "".join(f"    db.execute({s!r})\n" for s in statements)
