"""Baseline: the tables the negotiations migrations (seed 10.1) reference."""


def up(db):
    db.execute("""
        CREATE TABLE tenants (
            id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            name        TEXT NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
        )
    """)
    db.execute("""
        CREATE TABLE contacts (
            id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            tenant_id   UUID NOT NULL REFERENCES tenants(id),
            name        TEXT NOT NULL,
            email       TEXT,
            created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
        )
    """)
    # A new, empty table: a plain index is fine (lint knows the table was created just above).
    db.execute("CREATE INDEX idx_contacts_tenant_id ON contacts (tenant_id)")


def down(db):
    db.execute("DROP TABLE IF EXISTS contacts")
    db.execute("DROP TABLE IF EXISTS tenants")
