"""Static safety lint of migration files (seed 10.1's DON'Ts + squawk / strong_migrations rules).

The SQL is read from the file's syntax tree: string literals passed to `db.execute(...)` and the
table of `db.backfill(...)`, in source order, with their line numbers; nothing is imported or
run. down() is not linted (undoing a migration drops what up() made). Statements about a table
created earlier in the same migration are exempt: nobody else uses it yet.

Suppress one finding with a comment on the call's line or right above it:
    # lint: allow <rule> because <reason>
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from migrations_runner.migration import module_flags


@dataclass(frozen=True)
class Rule:
    id: str
    message: str
    safe: str


RULES = {
    r.id: r
    for r in (
        Rule(
            "drop-column",
            "DROP COLUMN breaks the app version still running (it reads the column) and "
            "destroys the data",
            "release app code that no longer uses the column, keep the column through the "
            "rollback period (seed 10.3 step 4), back up, then drop it in a later migration",
        ),
        Rule(
            "set-not-null",
            "SET NOT NULL on an existing column scans the whole table under an ACCESS "
            "EXCLUSIVE lock (reads and writes wait)",
            "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c; then "
            "SET NOT NULL (PostgreSQL 12+ skips the scan); then DROP CONSTRAINT c",
        ),
        Rule(
            "alter-multiple-actions",
            "several actions in one ALTER TABLE hold its ACCESS EXCLUSIVE lock until the "
            "slowest one finishes",
            "one action per ALTER TABLE statement, each slow one in its safe form",
        ),
        Rule(
            "backfill-under-alter-lock",
            "rows of a table are changed in the same transaction that ALTERed it: the ALTER's "
            "ACCESS EXCLUSIVE lock is held for the whole data change",
            "move the data change to its own migration with `transactional = False` using "
            "db.backfill() (batches, each its own transaction)",
        ),
        Rule(
            "index-not-concurrent",
            "CREATE INDEX without CONCURRENTLY blocks all writes to an existing table for the "
            "whole build",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ... in a migration with "
            "`transactional = False`",
        ),
        Rule(
            "concurrently-in-transaction",
            "CONCURRENTLY cannot run inside a transaction block, and this migration is "
            "transactional",
            "put the concurrent statements in their own migration with `transactional = False`",
        ),
        Rule(
            "change-column-type",
            "changing a column's type rewrites the table and its indexes under an ACCESS "
            "EXCLUSIVE lock, and breaks the app version still running",
            "add a new column, write both, backfill in batches, switch reads, drop the old "
            "column later",
        ),
        Rule(
            "rename-column",
            "renaming a column breaks the app version still running (it uses the old name)",
            "add the new column, write both, backfill, switch reads, drop the old one later",
        ),
        Rule(
            "rename-table",
            "renaming a table breaks the app version still running (it uses the old name)",
            "create the new table, write both (or a view with the old name), move reads, "
            "drop the old one later",
        ),
        Rule(
            "volatile-default",
            "ADD COLUMN with a volatile DEFAULT (random(), gen_random_uuid(), clock_timestamp(), "
            "serial, ...) rewrites the whole table under an ACCESS EXCLUSIVE lock",
            "add the column without a default (or with a constant one), backfill it in "
            "batches, then SET DEFAULT for new rows",
        ),
        Rule(
            "constraint-not-valid",
            "adding a FOREIGN KEY or CHECK checks every existing row while holding a lock that "
            "blocks writes",
            "ADD CONSTRAINT ... NOT VALID (new rows only), then VALIDATE CONSTRAINT in a "
            "separate statement (it lets writes through)",
        ),
        Rule(
            "drop-table",
            "DROP TABLE destroys the data and breaks the app version still running",
            "release app code that no longer uses the table, back up, then drop it in a later "
            "migration",
        ),
        Rule(
            "truncate-cascade",
            "TRUNCATE ... CASCADE also empties every table referencing this one, recursively",
            "TRUNCATE the tables you mean by name, without CASCADE (or DELETE in batches)",
        ),
        Rule(
            "dynamic-sql",
            "the SQL here is not a string literal, so lint cannot check it",
            "pass a string literal (values as %s parameters), or allow it with a reason",
        ),
        Rule(
            "bad-allow",
            "malformed lint allow comment",
            "write `# lint: allow <rule> because <reason>` with a known rule id",
        ),
    )
}


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str
    line: int
    statement: str
    detail: str = ""

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def message(self) -> str:
        return RULES[self.rule].message + (f" ({self.detail})" if self.detail else "")

    @property
    def safe(self) -> str:
        return RULES[self.rule].safe

    def format(self) -> str:
        return (
            f"{self.location}: [{self.rule}] {self.message}\n"
            f"    statement: {self.statement}\n"
            f"    safe alternative: {self.safe}\n"
            f"    or, if it is safe here: # lint: allow {self.rule} because <reason>"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "file": self.path,
            "line": self.line,
            "message": self.message,
            "safe": self.safe,
            "statement": self.statement,
        }


# -- SQL text -------------------------------------------------------------------------------------
def mask_sql(text: str) -> str:
    """TEXT with comments and string-literal contents blanked (same length, newlines kept)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        if text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif text[i] == "'":
            end = i + 1
            while end < n:
                if text[end] == "'":
                    if text[end + 1 : end + 2] != "'":
                        break
                    end += 1  # '' is a quote inside the literal
                end += 1
            blank(i + 1, end)
            i = end + 1
        elif text[i] == '"':
            end = text.find('"', i + 1)
            i = n if end < 0 else end + 1
        elif (tag := re.match(r"\$(?:[A-Za-z_]\w*)?\$", text[i:])) is not None:
            end = text.find(tag.group(), i + len(tag.group()))
            end = n if end < 0 else end
            blank(i + len(tag.group()), end)
            i = end + len(tag.group())
        else:
            i += 1
    return "".join(out)


def split_statements(text: str) -> list[tuple[int, str, str]]:
    """(offset, normalized lower-case statement, original excerpt) for each statement."""
    masked = mask_sql(text)
    result = []
    start = 0
    for piece in masked.split(";"):
        stripped = piece.strip()
        if stripped:
            offset = start + piece.index(stripped[0])
            original = " ".join(text[offset : start + len(piece)].split())
            result.append((offset, " ".join(stripped.split()).lower(), original[:160]))
        start += len(piece) + 1
    return result


def split_top_level(text: str, sep: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


NAME = r'(?:"[^"]+"|[a-z_][a-z0-9_$]*)'
QNAME = rf"{NAME}(?:\.{NAME})?"
VOLATILE = re.compile(
    r"\bdefault\b.*\b(?:random|gen_random_uuid|uuid_generate_v1|uuid_generate_v1mc|"
    r"uuid_generate_v4|clock_timestamp|timeofday|nextval|txid_current)\s*\(|\b(?:small|big)?serial\b"
)
RE_CREATE_TABLE = re.compile(
    rf"^create (?:(?:global |local )?(?:temporary |temp )|unlogged )?table (?:if not exists )?"
    rf"({QNAME})"
)
RE_CREATE_INDEX = re.compile(
    rf"^create (?:unique )?index (concurrently )?(?:if not exists )?(?:(?!on ){NAME} )?"
    rf"on (?:only )?({QNAME})"
)
RE_ALTER_TABLE = re.compile(rf"^alter table (?:if exists )?(?:only )?({QNAME}) (.*)$")
RE_DML = re.compile(
    rf"^(?:update (?:only )?({QNAME})|delete from (?:only )?({QNAME})|insert into ({QNAME}))"
)
RE_ADD_CONSTRAINT = re.compile(rf"^add (?:constraint ({NAME}) )?(foreign key|check)\b")
RE_NOT_NULL_CHECK = re.compile(rf"\bcheck \( ?\(? ?({NAME}) is not null ?\)? ?\)")
RE_ADD_COLUMN = re.compile(
    rf"^add (?!constraint\b|primary key\b|unique\b|foreign key\b|check\b|exclude\b)"
    rf"(?:column )?(?:if not exists )?({NAME})\b"
)


def table_name(qname: str) -> str:
    name = qname.replace('"', "")
    return name.removeprefix("public.")


@dataclass
class MigrationState:
    """What the statements seen so far in one migration did (for context-dependent rules)."""

    transactional: bool
    created: set[str] = field(default_factory=set)
    altered: set[str] = field(default_factory=set)
    not_null_checks: dict[tuple[str, str], str] = field(default_factory=dict)
    validated: set[tuple[str, str]] = field(default_factory=set)


def statement_rules(stmt: str, state: MigrationState) -> list[tuple[str, str]]:
    """(rule, detail) for one normalized statement; updates STATE."""
    if m := RE_CREATE_TABLE.match(stmt):
        state.created.add(table_name(m[1]))
        return []
    if m := RE_CREATE_INDEX.match(stmt):
        if m[1] and state.transactional:
            return [("concurrently-in-transaction", "")]
        if not m[1] and table_name(m[2]) not in state.created:
            return [("index-not-concurrent", f"on {table_name(m[2])}")]
        return []
    if re.match(r"^(?:drop index concurrently|reindex\b.*\bconcurrently\b)", stmt):
        return [("concurrently-in-transaction", "")] if state.transactional else []
    if m := re.match(r"^drop table (?:if exists )?(.*)$", stmt):
        names = [table_name(n.split()[0]) for n in split_top_level(m[1]) if n.split()]
        existing = [n for n in names if n not in state.created]
        return [("drop-table", ", ".join(existing))] if existing else []
    if stmt.startswith("truncate ") and re.search(r"\bcascade\b", stmt):
        return [("truncate-cascade", "")]
    if m := RE_ALTER_TABLE.match(stmt):
        return _alter_table_rules(table_name(m[1]), m[2], state)
    if m := RE_DML.match(stmt):
        return _dml_rules(table_name(next(g for g in m.groups() if g)), state)
    return []


def _dml_rules(table: str, state: MigrationState) -> list[tuple[str, str]]:
    if state.transactional and table in state.altered:
        return [("backfill-under-alter-lock", f"table {table}")]
    return []


def _alter_table_rules(table: str, rest: str, state: MigrationState) -> list[tuple[str, str]]:
    if table in state.created:
        return []
    state.altered.add(table)
    if rest.startswith("rename to "):
        return [("rename-table", f"{table} -> {rest.split()[-1]}")]
    if m := re.match(rf"^rename (?:column )?(?!constraint\b|to\b)({NAME}) to ", rest):
        return [("rename-column", f"{table}.{m[1]}")]
    actions = split_top_level(rest)
    found: list[tuple[str, str]] = []
    cheap = 0
    for action in actions:
        rules = _action_rules(table, action, state)
        found += rules
        cheap += bool(RE_ADD_COLUMN.match(action)) and not rules
    if len(actions) > 1 and cheap < len(actions):
        found.append(("alter-multiple-actions", f"{len(actions)} actions on {table}"))
    return found


def _action_rules(table: str, action: str, state: MigrationState) -> list[tuple[str, str]]:
    if re.match(r"^drop (?!constraint\b)(?:column )?", action):
        return [("drop-column", f"{table}: {action}")]
    if m := re.match(rf"^alter (?:column )?({NAME}) (?:set data )?type\b", action):
        return [("change-column-type", f"{table}.{m[1]}")]
    if m := re.match(rf"^alter (?:column )?({NAME}) set not null", action):
        column = m[1]
        proven = any(
            col == column and key[0] == table and key in state.validated
            for key, col in state.not_null_checks.items()
        )
        return [] if proven else [("set-not-null", f"{table}.{column}")]
    if m := re.match(rf"^validate constraint ({NAME})", action):
        state.validated.add((table, m[1]))
        return []
    if m := RE_ADD_CONSTRAINT.match(action):
        if not re.search(r"\bnot valid\b", action):
            return [("constraint-not-valid", f"{m[2].upper()} on {table}")]
        if m[1] and m[2] == "check" and (check := RE_NOT_NULL_CHECK.search(action)):
            state.not_null_checks[(table, m[1])] = check[1]
        return []
    if RE_ADD_COLUMN.match(action):
        rules = []
        if VOLATILE.search(action):
            rules.append(("volatile-default", f"{table}: {action}"))
        if re.search(r"\breferences\b|\bcheck\s*\(", action):
            rules.append(("constraint-not-valid", f"inline in ADD COLUMN on {table}"))
        return rules
    return []


# -- Python source --------------------------------------------------------------------------------
ALLOW_RE = re.compile(r"#\s*lint:\s*allow\s+(?P<rule>[\w-]+)(?:\s+because\s+(?P<reason>\S.*))?")


def _allow_comments(source: str) -> dict[int, str]:
    """Line -> rule of each `# lint: allow` comment (reason checked in lint_source)."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and (m := re.search(r"#\s*lint:\s*allow\b", tok.string)):
            found[tok.start[0]] = tok.string[m.start() :]
    return found


def _sql_calls(tree: ast.Module) -> list[ast.Call]:
    """db.execute(...) / db.backfill(...) calls outside down(), in source order."""
    down = [
        (n.lineno, n.end_lineno or n.lineno)
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name == "down"
    ]
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("execute", "backfill")
        and not any(a <= node.lineno <= b for a, b in down)
    ]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _call_findings(call: ast.Call, path: str, state: MigrationState) -> list[Finding]:
    assert isinstance(call.func, ast.Attribute)
    first = call.args[0] if call.args else None
    if call.func.attr == "backfill":
        kw = {k.arg: k.value for k in call.keywords}
        table = _literal(first if first is not None else kw.get("table"))
        if table is None:
            return [Finding("dynamic-sql", path, call.lineno, "db.backfill(<table not literal>)")]
        return [
            Finding(rule, path, call.lineno, f"db.backfill({table!r}, ...)", detail)
            for rule, detail in _dml_rules(table_name(table.lower()), state)
        ]
    text = _literal(first)
    if text is None or first is None:
        return [Finding("dynamic-sql", path, call.lineno, "db.execute(<not a string literal>)")]
    return [
        Finding(rule, path, first.lineno + text[:offset].count("\n"), original, detail)
        for offset, stmt, original in split_statements(text)
        for rule, detail in statement_rules(stmt, state)
    ]


def lint_source(source: str, path: str) -> list[Finding]:
    """Every finding of one migration file's source, allowed ones removed (pure)."""
    tree = ast.parse(source, filename=path)
    transactional, _ = module_flags(source, Path(path))
    lines = source.splitlines()
    allows = _allow_comments(source)
    findings: list[Finding] = []
    for line, comment in sorted(allows.items()):
        m = ALLOW_RE.match(comment)
        if not m or m["rule"] not in RULES or not m["reason"]:
            problem = (
                f"unknown rule '{m['rule']}'" if m and m["rule"] not in RULES else "no reason given"
            )
            findings.append(Finding("bad-allow", path, line, comment.strip(), problem))
    valid_allows = {
        line: m["rule"]
        for line, comment in allows.items()
        if (m := ALLOW_RE.match(comment)) and m["rule"] in RULES and m["reason"]
    }
    state = MigrationState(transactional=transactional)
    for call in _sql_calls(tree):
        window_start = call.lineno
        while window_start > 1 and lines[window_start - 2].strip().startswith("#"):
            window_start -= 1
        allowed = {
            valid_allows[ln]
            for ln in range(window_start, (call.end_lineno or call.lineno) + 1)
            if ln in valid_allows
        }
        findings += [f for f in _call_findings(call, path, state) if f.rule not in allowed]
    return sorted(findings, key=lambda f: (f.line, f.rule))


def lint_file(path: Path) -> list[Finding]:
    return lint_source(path.read_text(), _display(path))


def lint_paths(paths: Iterable[Path]) -> list[Finding]:
    """Lint files and directories (every NNNN_*.py migration in them)."""
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("[0-9]*.py")) if p.is_dir() else [p]
    return [f for file in files for f in lint_file(file)]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
