"""PostgreSQL migration runner on psycopg 3: ordered up/down files, history with checksums,
one advisory lock per database, per-migration transactions and timeouts, a safety lint, batched
data migrations and the production gate (staging first, backup). See docs/runbooks/db-migrations.md.
"""

from migrations_runner.backup import pre_migration_backup
from migrations_runner.db import MigrationDB
from migrations_runner.lint import Finding, lint_file, lint_paths, lint_source
from migrations_runner.migration import Migration, create_migration, discover
from migrations_runner.runner import (
    ProductionGate,
    RunOptions,
    VerifyReport,
    migrate,
    pending,
    rollback,
    staging_gate,
    status,
    verify,
)

__all__ = [
    "Finding",
    "Migration",
    "MigrationDB",
    "ProductionGate",
    "RunOptions",
    "VerifyReport",
    "create_migration",
    "discover",
    "lint_file",
    "lint_paths",
    "lint_source",
    "migrate",
    "pending",
    "pre_migration_backup",
    "rollback",
    "staging_gate",
    "status",
    "verify",
]
