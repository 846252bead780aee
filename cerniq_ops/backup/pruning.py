"""`invoke backup.prune` and `invoke backup.drop-previous`: let go what retention allows.

Prune deletes the backups of this environment that retention lets go (retention.py), broken
ones (dump missing or truncated) and leftover files of runs that died, and drops the databases
restores kept whose delay is over; drop-previous drops the kept databases now (or, with
`due_only`, those due).
"""

from __future__ import annotations

from datetime import UTC, datetime

from cerniq_ops import hosts
from cerniq_ops.backup.cluster import Database, due_for_drop
from cerniq_ops.backup.creating import remove_leftovers
from cerniq_ops.backup.manifest import paths
from cerniq_ops.backup.remote import _db_host, _drop, databases, list_on_host
from cerniq_ops.backup.retention import Candidate, Retention, select_for_deletion
from cerniq_ops.procedure import Context, Report, run, step


def _kept_of(ctx: Context) -> list[Database]:
    s = ctx.settings
    return [
        d for d in databases(ctx) if d.holds_data_of(s.db_name) and d.record.get("env") == ctx.env
    ]


@step()
def drop_previous_databases(ctx: Context) -> str:
    """Drop the data kept by restores (all of it, or only what is due with `due_only`)."""
    now = datetime.now(UTC)
    kept = _kept_of(ctx)
    unconfirmed = [d.name for d in kept if d.unconfirmed]
    chosen = [d.name for d in kept if not d.unconfirmed]
    if ctx.options.get("due_only"):
        chosen = [d.name for d in kept if due_for_drop(d, now)]
    ctx.facts["dropped_databases"] = chosen
    tail = ""
    if unconfirmed:
        tail = (
            f"; left {', '.join(unconfirmed)}: a restore died before confirming it, "
            "re-run that restore first"
        )
    if ctx.dry_run:
        return f"would drop {', '.join(chosen) or 'nothing'}{tail}"
    for name in chosen:
        _drop(ctx, name)
    return f"dropped {', '.join(chosen) or 'nothing'}{tail}"


@step()
def prune_backups(ctx: Context) -> str:
    """Retention over intact backups; broken ones (dump missing or truncated) and leftover
    files of this environment (orphan dumps without a manifest, .partial files) are removed:
    prune holds the deploy lock, as every run that creates this environment's backups does,
    so none of them is a dump in progress."""
    s = ctx.settings
    keep_last, keep_days = ctx.options.get("keep_last"), ctx.options.get("keep_days")
    policy = Retention(
        s.backup_keep_last if keep_last is None else int(keep_last),
        s.backup_keep_days if keep_days is None else float(keep_days),
    )
    now = datetime.now(UTC)
    listing = list_on_host(ctx)
    mine = [b for b in listing.backups if b.manifest.get("env") == ctx.env]
    intact = [b for b in mine if b.intact]
    broken = [b.id for b in mine if not b.intact]
    doomed = select_for_deletion(
        [Candidate(b.id, b.finished, b.verified) for b in intact], policy, now
    )
    leftovers = listing.leftovers(ctx.env)
    ctx.facts["deleted"] = doomed
    ctx.facts["broken"] = broken
    ctx.facts["kept"] = [b.id for b in intact if b.id not in doomed]
    ctx.facts["leftovers"] = leftovers
    others = len(listing.backups) - len(mine)
    tail = f"; {others} of other environments left alone" if others else ""
    extra = ""
    if broken:
        extra += f"; {len(broken)} broken (dump missing or truncated): {', '.join(broken)}"
    if leftovers:
        extra += f"; {len(leftovers)} leftover file(s): {', '.join(leftovers)}"
    if ctx.dry_run:
        listed = ", ".join(doomed) or "none"
        return f"would delete {len(doomed)} of {len(intact)} backup(s): {listed}{extra}{tail}"
    for backup_id_ in doomed + broken:
        p = paths(s.backup_dir, backup_id_)
        hosts.sh(_db_host(ctx), ["rm", "-f", p["dump"], p["verify"], p["manifest"]])
    remove_leftovers(ctx, leftovers)
    due = [d.name for d in _kept_of(ctx) if due_for_drop(d, now)]
    for name in due:
        _drop(ctx, name)
    ctx.facts["dropped_databases"] = due
    dropped = f"; dropped {', '.join(due)} (retention delay over)" if due else ""
    return f"deleted {len(doomed)}, kept {len(intact) - len(doomed)}{extra}{dropped}{tail}"


PRUNE = (prune_backups,)
DROP_PREVIOUS = (drop_previous_databases,)


def prune(ctx: Context) -> Report:
    return run(PRUNE, ctx)


def drop_previous(ctx: Context) -> Report:
    return run(DROP_PREVIOUS, ctx)
