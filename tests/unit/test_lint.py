"""The migration lint: each rule with an unsafe and a safe example, allow comments, locations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from migrations_runner.lint import RULES, lint_paths, lint_source

pytestmark = pytest.mark.unit

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def migration(*statements: str, transactional: bool = True, body: str = "") -> str:
    """A migration file whose up() executes STATEMENTS (one db.execute each), then BODY."""
    calls = "".join(f"    db.execute({s!r})\n" for s in statements)
    flag = "" if transactional else "transactional = False\n\n\n"
    return f"{flag}def up(db):\n{calls}{textwrap.indent(textwrap.dedent(body), '    ')}\n"


def rules(source: str) -> list[str]:
    return [f.rule for f in lint_source(source, "0001_x.py")]


# rule -> (unsafe migration, safe migration doing the same job)
CASES = {
    "drop-column": (
        migration("ALTER TABLE negotiations DROP COLUMN important_data"),
        migration("ALTER TABLE negotiations DROP CONSTRAINT negotiations_old_check"),
    ),
    "set-not-null": (
        migration("ALTER TABLE negotiations ALTER COLUMN new_state SET NOT NULL"),
        migration(
            "ALTER TABLE negotiations ADD CONSTRAINT ns_nn CHECK (new_state IS NOT NULL) NOT VALID",
            "ALTER TABLE negotiations VALIDATE CONSTRAINT ns_nn",
            "ALTER TABLE negotiations ALTER COLUMN new_state SET NOT NULL",
            "ALTER TABLE negotiations DROP CONSTRAINT ns_nn",
        ),
    ),
    "alter-multiple-actions": (
        migration("ALTER TABLE negotiations ADD COLUMN a TEXT, DROP CONSTRAINT c_check"),
        migration(
            "ALTER TABLE negotiations ADD COLUMN a TEXT, ADD COLUMN b INT DEFAULT 0",
            "ALTER TABLE negotiations DROP CONSTRAINT c_check",
        ),
    ),
    "backfill-under-alter-lock": (
        migration(
            "ALTER TABLE negotiations ADD COLUMN new_state TEXT",
            "UPDATE negotiations SET new_state = old_state",
        ),
        migration(
            "ALTER TABLE negotiations ADD COLUMN IF NOT EXISTS new_state TEXT",
            transactional=False,
            body="db.backfill('negotiations', set_='new_state = s', where='new_state IS NULL')",
        ),
    ),
    "index-not-concurrent": (
        migration("CREATE INDEX idx_n_tenant ON negotiations (tenant_id)"),
        migration(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_n_tenant ON negotiations (tenant_id)",
            transactional=False,
        ),
    ),
    "concurrently-in-transaction": (
        migration("CREATE INDEX CONCURRENTLY idx_n_tenant ON negotiations (tenant_id)"),
        migration(
            "CREATE INDEX CONCURRENTLY idx_n_tenant ON negotiations (tenant_id)",
            transactional=False,
        ),
    ),
    "change-column-type": (
        migration("ALTER TABLE negotiations ALTER COLUMN score TYPE bigint"),
        migration("ALTER TABLE negotiations ADD COLUMN score_big bigint"),
    ),
    "rename-column": (
        migration("ALTER TABLE negotiations RENAME COLUMN old_state TO legacy_state"),
        migration("ALTER TABLE negotiations RENAME CONSTRAINT a_check TO b_check"),
    ),
    "rename-table": (
        migration("ALTER TABLE negotiations RENAME TO deals"),
        migration("CREATE TABLE deals (id uuid)", "ALTER TABLE deals RENAME TO deals_v2"),
    ),
    "volatile-default": (
        migration("ALTER TABLE negotiations ADD COLUMN token uuid DEFAULT gen_random_uuid()"),
        migration("ALTER TABLE negotiations ADD COLUMN seen_at timestamptz DEFAULT now()"),
    ),
    "constraint-not-valid": (
        migration(
            "ALTER TABLE negotiations ADD CONSTRAINT n_owner_fk "
            "FOREIGN KEY (owner_id) REFERENCES users (id)"
        ),
        migration(
            "ALTER TABLE negotiations ADD CONSTRAINT n_owner_fk "
            "FOREIGN KEY (owner_id) REFERENCES users (id) NOT VALID",
            "ALTER TABLE negotiations VALIDATE CONSTRAINT n_owner_fk",
        ),
    ),
    "drop-table": (
        migration("DROP TABLE legacy_negotiations"),
        migration("CREATE TABLE scratch (id int)", "DROP TABLE scratch"),
    ),
    "truncate-cascade": (
        migration("TRUNCATE import_rows CASCADE"),
        migration("TRUNCATE import_rows, import_errors"),
    ),
    "dynamic-sql": (
        migration(body="db.execute(f'UPDATE t SET x = {value}')"),
        migration(body="db.execute('UPDATE t SET x = %s', [value])"),
    ),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES) - {"bad-allow"}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_unsafe_example_is_found(rule: str) -> None:
    assert rule in rules(CASES[rule][0])


@pytest.mark.parametrize("rule", sorted(CASES))
def test_safe_example_passes(rule: str) -> None:
    assert rules(CASES[rule][1]) == []


def test_seed_bad_examples_are_found() -> None:
    """Seed 10.1's DON'Ts: dropping a column; ADD COLUMN + SET NOT NULL holding one lock."""
    assert rules(migration("ALTER TABLE negotiations DROP COLUMN important_data")) == [
        "drop-column"
    ]
    bad2 = migration("""
        ALTER TABLE negotiations
        ADD COLUMN new_column TEXT,
        ALTER COLUMN old_column SET NOT NULL  -- Locks table!
    """)
    assert sorted(rules(bad2)) == ["alter-multiple-actions", "set-not-null"]


def test_more_unsafe_variants() -> None:
    assert rules(migration("ALTER TABLE n ALTER COLUMN s SET DATA TYPE text")) == [
        "change-column-type"
    ]
    assert rules(migration("ALTER TABLE n ADD CONSTRAINT c CHECK (x > 0)")) == [
        "constraint-not-valid"
    ]
    assert rules(migration("ALTER TABLE n ADD COLUMN owner uuid REFERENCES users(id)")) == [
        "constraint-not-valid"
    ]
    assert rules(migration("ALTER TABLE n ADD COLUMN seq bigserial")) == ["volatile-default"]
    assert rules(migration("CREATE UNIQUE INDEX u ON public.n (a)")) == ["index-not-concurrent"]
    assert rules(migration("DROP INDEX CONCURRENTLY idx")) == ["concurrently-in-transaction"]
    # SET NOT NULL with a check that was never validated is still a full scan
    assert rules(
        migration(
            "ALTER TABLE n ADD CONSTRAINT c CHECK (s IS NOT NULL) NOT VALID",
            "ALTER TABLE n ALTER COLUMN s SET NOT NULL",
        )
    ) == ["set-not-null"]


def test_sql_in_string_literals_and_comments_is_not_a_statement() -> None:
    source = migration(
        "-- DROP TABLE negotiations\nUPDATE notes SET body = 'drop table x; truncate y cascade'"
    )
    assert rules(source) == []


def test_tables_created_in_the_same_migration_are_exempt() -> None:
    source = migration("""
        CREATE TABLE notes (id uuid PRIMARY KEY, body text);
        CREATE INDEX idx_notes_body ON notes (body);
        ALTER TABLE notes ALTER COLUMN body SET NOT NULL;
        ALTER TABLE notes ADD CONSTRAINT body_len CHECK (length(body) < 10000);
    """)
    assert rules(source) == []


def test_down_is_not_linted() -> None:
    source = (
        migration("CREATE TABLE t (id int)") + "\n\ndef down(db):\n    db.execute('DROP TABLE t')\n"
    )
    assert rules(source) == []


def test_finding_names_rule_file_line_and_safe_alternative() -> None:
    source = textwrap.dedent('''
        def up(db):
            db.execute("""
                CREATE TABLE scratch (id int);

                ALTER TABLE negotiations
                    ALTER COLUMN new_state SET NOT NULL
            """)
    ''').lstrip()
    [finding] = lint_source(source, "migrations/0302_x.py")
    assert (finding.rule, finding.location) == ("set-not-null", "migrations/0302_x.py:5")
    text = finding.format()
    assert text.startswith("migrations/0302_x.py:5: [set-not-null] SET NOT NULL on an existing")
    assert "safe alternative: ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID" in text
    assert "statement: ALTER TABLE negotiations ALTER COLUMN new_state SET NOT NULL" in text


def test_allow_comment_with_reason_suppresses_that_rule_on_the_next_call_only() -> None:
    source = textwrap.dedent("""
        def up(db):
            # lint: allow drop-column because nothing has read `fax` since v1.2 (backup 2025-01)
            db.execute("ALTER TABLE contacts DROP COLUMN fax")
            db.execute("ALTER TABLE contacts DROP COLUMN pager")
            db.execute("DROP TABLE old_contacts")  # lint: allow drop-column because wrong rule
    """)
    found = lint_source(source, "m.py")
    assert [(f.rule, f.line) for f in found] == [("drop-column", 5), ("drop-table", 6)]


@pytest.mark.parametrize(
    ("comment", "detail"),
    [
        ("# lint: allow drop-column", "no reason given"),
        ("# lint: allow drop-everything because yes", "unknown rule 'drop-everything'"),
    ],
)
def test_malformed_allow_is_itself_a_finding(comment: str, detail: str) -> None:
    source = f'def up(db):\n    {comment}\n    db.execute("ALTER TABLE c DROP COLUMN fax")\n'
    found = lint_source(source, "m.py")
    assert [(f.rule, f.line, f.detail) for f in found] == [
        ("bad-allow", 2, detail),
        ("drop-column", 3, "c: drop column fax"),
    ]


def test_repo_migrations_are_clean() -> None:
    """The lint run in CI: migrations/ has no finding."""
    assert [f.format() for f in lint_paths([REPO_MIGRATIONS])] == []
