"""Seed 10.1: the negotiations indexes, CREATE INDEX CONCURRENTLY (writes go on meanwhile).

CONCURRENTLY cannot run in a transaction, so this migration runs in autocommit. If a build
fails it leaves an INVALID index; the runner names it and the DROP INDEX CONCURRENTLY that
cleans it, and refuses to migrate until it is gone (IF NOT EXISTS would keep it invalid).
"""

transactional = False


def up(db):
    db.execute("""
        CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_negotiations_tenant_id
        ON negotiations (tenant_id)
    """)
    db.execute("""
        CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_negotiations_contact_id
        ON negotiations (contact_id)
    """)


def down(db):
    db.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_negotiations_contact_id")
    db.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_negotiations_tenant_id")
