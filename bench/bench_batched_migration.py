"""Bench: seed 10.3's batched data migration vs one UPDATE, while the app keeps writing.

Builds a throwaway database with ROWS rows, starts a writer that updates random rows one at a
time (like the app), then migrates a column twice, side by side in one run:
  1. one UPDATE over every row (what the seed warns against),
  2. db.backfill() from migrations_runner (batches of 1000, each its own transaction).
For each it prints the writer's worst wait while the migration ran, and the ratio.

    .venv/bin/python bench/bench_batched_migration.py [--rows 1000000] [--batch-size 1000]

Needs the local PostgreSQL (PGHOST/PGPORT/PGUSER, default 127.0.0.1:5432 postgres).
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from migrations_runner.db import MigrationDB

ADMIN: dict[str, Any] = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
    "dbname": "postgres",
}
MAPPING = (
    "CASE WHEN old_state = 'pending' THEN 'initial' "
    "WHEN old_state = 'active' THEN 'needs_analysis' ELSE old_state END"
)


@dataclass
class Writer:
    """Updates random rows one by one; records (start, wait) of every update."""

    conninfo: dict[str, Any]
    rows: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            while not self.stop.is_set():
                row_id = rng.randint(1, self.rows)
                started = time.perf_counter()
                conn.execute("UPDATE bench SET hits = hits + 1 WHERE id = %s", [row_id])
                self.samples.append((started, time.perf_counter() - started))

    def waits_between(self, start: float, end: float) -> list[float]:
        """Waits of the updates that started in [start, end], sorted."""
        return sorted(w for s, w in self.samples if start <= s <= end)


def summary(waits: list[float]) -> str:
    if not waits:
        return "no writer updates"
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return (
        f"writer worst wait {waits[-1] * 1000:8.1f} ms (p99 {p99 * 1000:6.1f} ms, "
        f"{len(waits)} updates)"
    )


def phase(conn: psycopg.Connection[Any], writer: Writer, name: str, work: Any) -> float:
    """Run WORK while the writer writes; print and return the writer's worst wait.

    Each phase starts from the same state: dead rows vacuumed, a fresh checkpoint.
    """
    conn.execute("VACUUM bench")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    work()
    ended = time.perf_counter()
    # the writer is sequential: once an update started after END is recorded, every update
    # that started inside the window (including one blocked until the end) is counted
    deadline = time.perf_counter() + 30
    while not any(s > ended for s, _ in writer.samples[-5:]) and time.perf_counter() < deadline:
        time.sleep(0.01)
    waits = writer.waits_between(started, ended)
    print(f"{name:>14}: {ended - started:6.2f}s, {summary(waits)}")
    return waits[-1] if waits else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
    args = parser.parse_args()

    name = f"cq_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = {**ADMIN, "dbname": name, "application_name": "cq-bench"}
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            print(f"loading {args.rows} rows into {name} ...")
            conn.execute(
                "CREATE TABLE bench (id bigint PRIMARY KEY, old_state text, hits int NOT NULL "
                "DEFAULT 0, state_single text, state_batched text)"
            )
            conn.execute(
                "INSERT INTO bench (id, old_state) SELECT g, (ARRAY['pending', 'active', 'won'])"
                "[1 + g %% 3] FROM generate_series(1, %s) g",
                [args.rows],
            )
            conn.execute("VACUUM ANALYZE bench")

            writer = Writer(conninfo, args.rows)
            thread = threading.Thread(target=writer.run, daemon=True)
            thread.start()
            time.sleep(1.0)  # a baseline second of writes before any migration
            print(f"{'no migration':>14}: {summary(writer.waits_between(0, time.perf_counter()))}")

            single = phase(
                conn,
                writer,
                "single UPDATE",
                lambda: conn.execute(f"UPDATE bench SET state_single = {MAPPING}"),
            )
            db = MigrationDB(conn, transactional=False, log=lambda line: None)
            batched = phase(
                conn,
                writer,
                f"batched {args.batch_size}",
                lambda: db.backfill(
                    "bench",
                    set_=f"state_batched = {MAPPING}",
                    where="state_batched IS NULL",
                    batch_size=args.batch_size,
                    pause=args.pause,
                ),
            )
            writer.stop.set()
            thread.join()
            same = conn.execute(
                "SELECT count(*) FROM bench WHERE state_single IS DISTINCT FROM state_batched"
            ).fetchone()
            print(f"rows that differ between the two results: {same[0] if same else '?'}")
            ratio = single / batched if batched else float("inf")
            print(f"worst writer wait: single UPDATE / batched = {ratio:.0f}x")
    finally:
        with psycopg.connect(**ADMIN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
