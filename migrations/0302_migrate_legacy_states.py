"""Seed 10.3: map the legacy `old_state` into `new_state`, in batches, then make it NOT NULL.

Non-transactional: each batch of db.backfill() commits on its own (no row stays locked longer
than one batch), and every statement is safe to re-run, so an interrupted run resumes.
The seed's final `SET NOT NULL` would scan the table under an ACCESS EXCLUSIVE lock; here a
CHECK (new_state IS NOT NULL) NOT VALID is added and VALIDATEd first (writes go on), which lets
PostgreSQL 12+ set NOT NULL without the scan. The old column stays for the rollback period
(seed step 4). Release the app version that writes new_state before running this, or rows it
inserts meanwhile make VALIDATE fail.
"""

transactional = False


def up(db):
    # 1. Add the new column (nullable first)
    db.execute("ALTER TABLE negotiations ADD COLUMN IF NOT EXISTS new_state TEXT")

    # 2. Migrate the data in batches (seed: 1000 rows, 100 ms pause). A NULL old_state falls
    #    back to current_state: the seed's `ELSE old_state` left such rows NULL and looped.
    db.backfill(
        "negotiations",
        set_="""new_state = CASE
                    WHEN old_state = 'pending' THEN 'initial'
                    WHEN old_state = 'active' THEN 'needs_analysis'
                    ELSE COALESCE(old_state, current_state)
                END""",
        where="new_state IS NULL",
        batch_size=1000,
        pause=0.1,
    )

    # 3. Constraint after the data migration, without a long lock
    db.execute("ALTER TABLE negotiations DROP CONSTRAINT IF EXISTS negotiations_new_state_not_null")
    db.execute("""
        ALTER TABLE negotiations ADD CONSTRAINT negotiations_new_state_not_null
        CHECK (new_state IS NOT NULL) NOT VALID
    """)
    db.execute("ALTER TABLE negotiations VALIDATE CONSTRAINT negotiations_new_state_not_null")
    db.execute("ALTER TABLE negotiations ALTER COLUMN new_state SET NOT NULL")
    db.execute("ALTER TABLE negotiations DROP CONSTRAINT negotiations_new_state_not_null")

    # 4. (Later, after the rollback period) a separate migration drops old_state.


def down(db):
    db.execute("ALTER TABLE negotiations DROP COLUMN IF EXISTS new_state")
