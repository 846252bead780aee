"""Seed 10.1: the negotiations table (its indexes are in 0301, built CONCURRENTLY).

`old_state` is the legacy state column that 0302 (seed 10.3) migrates into `new_state`.
"""


def up(db):
    db.execute("""
        CREATE TABLE negotiations (
            id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            tenant_id      UUID NOT NULL REFERENCES tenants(id),
            contact_id     UUID NOT NULL REFERENCES contacts(id),
            current_state  TEXT NOT NULL DEFAULT 'initial',
            old_state      TEXT,
            created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            updated_at     TIMESTAMPTZ NOT NULL DEFAULT NOW()
        )
    """)


def down(db):
    db.execute("DROP TABLE IF EXISTS negotiations")
