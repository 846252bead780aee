"""`db`, what a migration's up(db)/down(db) receives: a thin wrapper over a psycopg connection."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from cerniq_ops.errors import StepFailed
from migrations_runner import sql


class MigrationDB:
    """Runs a migration's statements and remembers which completed (for failure reports)."""

    def __init__(
        self, conn: psycopg.Connection, *, transactional: bool, log: Callable[[str], None]
    ) -> None:
        self.conn = conn
        self.transactional = transactional
        self.log = log
        self.done: list[str] = []
        self.backfilled: dict[str, tuple[int, int]] = {}  # table: (rows, batches) committed

    def execute(self, query: str, params: Any = None) -> psycopg.Cursor[Any]:
        cur = self.conn.execute(query, params)  # type: ignore[arg-type]
        self.done.append(" ".join(query.split()))
        return cur

    def backfill(
        self,
        table: str,
        set_: str,
        where: str,
        *,
        key: str = "id",
        batch_size: int = 1000,
        pause: float = 0.1,
        params: Mapping[str, Any] | None = None,
        progress_every: float = 5.0,
    ) -> int:
        """UPDATE TABLE SET SET_ for the rows matching WHERE, BATCH_SIZE rows per transaction.

        Each batch commits on its own, so no row stays locked longer than one batch; PAUSE
        seconds between batches leave room for the app (seed 10.3: 1000 rows, 100 ms). WHERE
        must select only rows not yet done (e.g. `new_state IS NULL`): an interrupted run then
        resumes where it stopped. Progress is logged at most every PROGRESS_EVERY seconds.
        Needs a non-transactional migration (`transactional = False`). Returns rows updated.
        """
        if self.transactional:
            raise StepFailed(
                f"backfill of {table} needs `transactional = False` in its migration: inside one "
                f"transaction every batch's row locks would be held until the end"
            )
        started = last_report = time.monotonic()
        total = batches = 0
        after: Any = None
        while True:
            query = sql.batch_update(table, set_, where, key, first=after is None)
            row = self.conn.execute(  # type: ignore[call-overload]
                query, {**(params or {}), "after": after, "batch_size": batch_size}
            ).fetchone()
            after, updated = row if row else (None, 0)
            if after is None:
                break
            total += updated
            batches += 1
            self.backfilled[table] = (total, batches)  # committed: counts for retries, reports
            now = time.monotonic()
            if now - last_report >= progress_every:
                self.log(_progress(table, total, batches, now - started))
                last_report = now
            if pause:
                time.sleep(pause)
        self.backfilled.pop(table, None)
        self.done.append(f"backfill {table}: {total} rows")
        self.log(_progress(table, total, batches, time.monotonic() - started, done=True))
        return total

    @property
    def touched(self) -> bool:
        """Something of this attempt is committed (a statement, or a backfill batch)."""
        return bool(self.done or self.backfilled)

    def unfinished(self) -> list[str]:
        """Backfills cut short, as report lines: what their committed batches did."""
        return [
            f"backfill {table}: {rows} rows in {batches} batches committed before the failure "
            "(kept; the re-run resumes after them)"
            for table, (rows, batches) in self.backfilled.items()
        ]


def _progress(table: str, rows: int, batches: int, elapsed: float, done: bool = False) -> str:
    rate = rows / elapsed if elapsed > 0 else 0.0
    word = "done" if done else "progress"
    return (
        f"  backfill {table}: {word}: {rows} rows in {batches} batches, "
        f"{elapsed:.1f}s ({rate:.0f} rows/s)"
    )
