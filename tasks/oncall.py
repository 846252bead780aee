"""`invoke oncall.*`: the on-call rotation (seed 12) from team.yml: who, schedule, override,
handoff."""

from datetime import timedelta
from pathlib import Path

from invoke import task

from cerniq_ops import business, notify, oncall, settings, team
from cerniq_ops.output import emit_json, say, table
from tasks._cli import cli

AT = "the time (ISO 8601; without an offset: the team's time zone; default: now)"


def _load():
    t = team.load()
    return t, oncall.rotation(t, oncall.load_overrides(t))


def _shift(t, row):
    return {
        "primary": row.primary,
        "secondary": row.secondary,
        "from": oncall.local(row.shift_start, t),
        "to": oncall.local(row.shift_end, t),
        "notes": row.notes,
    }


@task(help={"at": AT, "json": "print JSON"})
@cli
def who(c, at=None, json=False):
    """Who is primary and secondary on call at AT (overrides applied)."""
    t, rot = _load()
    now = business.parse_at(at, t["oncall"]["time_zone"])
    row = rot.who(now)
    if json:
        emit_json({"at": now.isoformat(), **_shift(t, row)})
        return
    say(f"primary: {row.primary}  secondary: {row.secondary}")
    say(f"shift: {oncall.local(row.shift_start, t)} -> {oncall.local(row.shift_end, t)}")
    for note in row.notes:
        say(f"override: {note}")


@task(help={"weeks": "how many weeks (default 4)", "at": AT, "json": "print JSON"})
@cli
def schedule(c, weeks=4, at=None, json=False):
    """The next WEEKS shifts from the one running at AT, with the overrides touching each."""
    t, rot = _load()
    try:
        count = int(weeks)
    except ValueError:
        from cerniq_ops.errors import BadInput

        raise BadInput(f"--weeks {weeks!r} is not a number") from None
    rows = oncall.schedule(rot, business.parse_at(at, t["oncall"]["time_zone"]), count)
    if json:
        emit_json([_shift(t, r) for r in rows])
        return
    say(
        table(
            ("from", "to", "primary", "secondary", "overrides"),
            [
                (
                    oncall.local(r.shift_start, t),
                    oncall.local(r.shift_end, t),
                    r.primary,
                    r.secondary,
                    "; ".join(r.notes) or "-",
                )
                for r in rows
            ],
        )
    )


@task(
    help={
        "who": "the person who covers (a name under team.yml people)",
        "from_": "start (ISO 8601; without an offset: the team's time zone)",
        "to": "end (ISO 8601)",
        "role": "primary (default) or secondary",
        "reason": "swap, absence, ...",
    }
)
@cli
def override(c, who, from_, to, role="primary", reason=""):
    """Record an override (swap or absence) in the overrides file; the same one is kept once."""
    t = team.load()
    zone = t["oncall"]["time_zone"]
    o = oncall.new_override(
        t, who, business.parse_at(from_, zone), business.parse_at(to, zone), role, reason
    )
    current = oncall.load_overrides(t)
    span = f"{who} covers {role} {oncall.local(o.start, t)} -> {oncall.local(o.end, t)}"
    if o in current:
        say(f"unchanged: {span}")
        return
    oncall.save_overrides(t, [*current, o])
    say(f"recorded: {span}")


@task(
    help={
        "env": "the environment reported on (default: team.yml oncall.handoff_env)",
        "now": "the handoff time (ISO 8601; default: now)",
        "source": "read incidents/lock/audit from this folder instead of the primary host",
        "dry_run": "print the checklist; post nothing",
        "json": "print JSON",
    }
)
@cli
def handoff(c, env=None, now=None, source=None, dry_run=False, json=False):
    """The seed's handoff checklist (12.2) from live data, posted to Slack (#incidents)."""
    t, rot = _load()
    at = business.parse_at(now, t["oncall"]["time_zone"])
    env = env or t["oncall"].get("handoff_env", "production")
    incoming = rot.who(at)
    outgoing = rot.who(incoming.shift_start - timedelta(seconds=1))
    if source:
        if env not in settings.ENVIRONMENTS:
            settings.load(env)  # raises the one-line error for an unknown environment
        data = oncall.folder_data(Path(source), env)
    else:
        data = oncall.live_data(settings.load(env), at)
    text = oncall.handoff_text(t, data, outgoing, incoming, at)
    detail = "dry run: not posted"
    if not dry_run:
        payload = notify.slack_payload(
            notify.Fields(
                f"On-call handoff: {incoming.primary} is primary",
                {"Primary": incoming.primary, "Secondary": incoming.secondary, "Environment": env},
                True,
                text,
            )
        )
        detail = notify.post_kind(
            "oncall_handoff", team.outside().default_webhook(), payload, t
        ).detail
    if json:
        emit_json({"text": text, "posted": detail, **_shift(t, incoming)})
        return
    say(text)
    say(f"({detail})")


@task(
    help={
        "env": "the environment whose incidents are checked (default: team.yml handoff_env)",
        "now": "the clock (ISO 8601; default: now)",
        "source": "read and update incident records in this folder instead of the primary host",
        "json": "print JSON",
    }
)
@cli
def escalate(c, env=None, now=None, source=None, json=False):
    """Page the secondary for open P1/P2 incidents the primary did not acknowledge within the
    response time (once per incident; PagerDuty Events v2 when a routing key is set)."""
    import json as jsonlib

    from cerniq_ops import hosts, incident
    from cerniq_ops.errors import BadInput

    t, rot = _load()
    at = business.parse_at(now, t["oncall"]["time_zone"])
    env = env or t["oncall"].get("handoff_env", "production")
    if source and env not in settings.ENVIRONMENTS:
        settings.load(env)  # raises the one-line error for an unknown environment
    pager = oncall.Pager(t, rot, team.outside().default_webhook())
    results = []
    if source:
        folder = Path(source) / "incidents"
        if not folder.is_dir():
            raise BadInput(f"--source {source} has no incidents/ folder")
        for path in sorted(folder.glob("INC-*.json")):
            updated, result = pager.maybe_page(jsonlib.loads(path.read_text()), at)
            if updated:
                path.write_text(jsonlib.dumps(updated, indent=2, sort_keys=True) + "\n")
            results += [result] if result else []
    else:
        s = settings.load(env)
        with hosts.session(s, [s.primary_host]) as state:
            host = state.inventory.get_host(s.primary_host.name)
            for record in incident.list_all(host, s):
                updated, result = pager.maybe_page(record, at)
                if updated:
                    incident.save(host, s, updated)
                results += [result] if result else []
    if json:
        emit_json({"at": at.isoformat(), "pages": results})
        return
    for r in results:
        say(f"{r['id']}: paged {r['paged']}: {r['detail']}")
    say(f"{len(results)} page(s) at {at.isoformat()}")
