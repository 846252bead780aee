"""`invoke backup.list`: the backups on the db host, newest first, with their state. Read only."""

from __future__ import annotations

from datetime import UTC, datetime

from cerniq_ops.backup.remote import list_on_host
from cerniq_ops.backup.retention import verified_freshness
from cerniq_ops.procedure import Context, Report, run, step


@step(audited=False)
def list_backups(ctx: Context) -> str:
    listing = list_on_host(ctx)
    ctx.facts["backups"] = [b.as_dict() for b in listing.backups]
    ctx.facts["leftovers"] = listing.leftovers(ctx.env)
    ctx.facts["verified"] = verified_freshness(
        listing.backups, datetime.now(UTC), ctx.settings.backup_max_verified_age_hours
    )
    s = ctx.settings
    return f"{len(listing.backups)} backup(s) in {s.backup_dir} on {s.db_host.name}"


LIST = (list_backups,)


def list_(ctx: Context) -> Report:
    ctx.locking = False
    return run(LIST, ctx)
