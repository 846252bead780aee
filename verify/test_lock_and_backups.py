"""Checks of the environment's state of record: the deploy lock and the newest backup."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from cerniq_ops import audit_checks as ac
from cerniq_ops.lock import lock_path
from verify.helpers import problems_or_pass, read, read_many


@pytest.mark.hosts("primary")
def test_deploy_lock(host, settings, detail):
    """No deploy lock, or one younger than deploy_lock_max_age_minutes (a run in progress)."""
    path = lock_path(settings)
    text = read(host, path)
    problem = ac.lock_problem(
        path, text, datetime.now(UTC), settings.deploy_lock_max_age_minutes, _holder_alive(text)
    )
    seen = "not held" if text is None else f"held by a run in progress ({text.strip()[:80]})"
    problems_or_pass([problem] if problem else [], detail, f"{path}: {seen}")


@pytest.mark.hosts("primary")
def test_unfinished_run(host, settings, detail):
    """No run that died without being re-run: the run journal and blue-green's run record."""
    from cerniq_ops.bluegreen import PENDING
    from cerniq_ops.journal import journal_path

    root = settings.app_root.rstrip("/")
    paths = [journal_path(settings), lock_path(settings), f"{root}/{PENDING}"]
    texts = read_many(host, paths)
    problems = ac.unfinished_run_problems(
        paths[0],
        texts[paths[0]],
        texts[paths[1]],
        {paths[2]: texts[paths[2]]},
        datetime.now(UTC),
        settings.deploy_lock_max_age_minutes,
        _holder_alive(texts[paths[1]]),
    )
    problems_or_pass(problems, detail, ac.last_run_summary(texts[paths[0]]))


def _holder_alive(text: str | None) -> bool | None:
    """Whether the lock's holder still runs, when it ran on this machine (a killed run)."""
    from cerniq_ops import lock

    record = lock.parse(text)
    return record.holder_alive() if record else None


@pytest.mark.hosts("db_primary")
def test_backup(host, spec, settings, detail):
    """A verified backup (dump still whole) younger than backup_max_verified_age_hours, the
    newest one not broken, and no file left by a backup run that died."""
    from cerniq_ops import backup

    listing = host.run(shlex.join(backup.listing_argv(settings.backup_dir)))
    if listing.rc != 0:
        pytest.fail(
            f"cannot list {settings.backup_dir}: {listing.stderr.strip()[:120]}", pytrace=False
        )
    found = backup.parse_listing(listing.stdout)
    problems, summary = ac.backup_problems(
        found.backups,
        settings.env,
        f"{settings.backup_dir} on {spec.name}",
        datetime.now(UTC),
        settings.backup_max_verified_age_hours,
        found.leftovers(settings.env),
    )
    problems_or_pass(problems, detail, summary)


@pytest.mark.hosts("db_primary")
def test_restore_state(host, spec, settings, detail):
    """The live database accepts connections, and no restore left a half-restored database or
    a swap it never confirmed (`backup.restore` re-run with the same backup finishes it)."""
    from cerniq_ops import backup

    out = host.run(shlex.join(backup.psql_argv(settings, "postgres", backup.DATABASES_SQL)))
    if out.rc != 0:
        pytest.fail(f"cannot list the databases: {out.stderr.strip()[:120]}", pytrace=False)
    problems, summary = ac.restore_problems(
        backup.parse_databases(out.stdout),
        settings.db_name,
        settings.env,
        backup.restore_prefix(settings),
        spec.name,
    )
    problems_or_pass(problems, detail, summary)
