"""`invoke incident.*`: incident response (seed 11): open, update, resolve, list, report."""

import builtins
from datetime import UTC, datetime

from invoke import task

from cerniq_ops import hosts, incident, settings
from cerniq_ops.output import emit_json, say, table
from cerniq_ops.procedure import Context, run
from tasks._cli import cli, progress_for, run_procedure

ENV = "staging or production (the incident record lives on its primary host)"


def _run(env, steps, options, json):
    ctx = Context(
        settings.load(env), "incident", options=options, locking=False, progress=progress_for(json)
    )
    run_procedure(lambda c: run(steps, c), ctx, json)
    return ctx.facts.get("incident")


@task(
    help={
        "env": ENV,
        "severity": "P1, P2, P3 or P4 (seed 11.1)",
        "title": "what is wrong",
        "summary": "impact so far",
        "json": "print the report as JSON",
    }
)
@cli
def open(c, env, severity, title, summary="", json=False):  # noqa: A001 - the command's name
    """Open an incident: record INC-YYYYmmddHHMMSS, post the status update to Slack."""
    record = _run(
        env, incident.OPEN, {"severity": severity, "title": title, "summary": summary}, json
    )
    if not json:
        sev = incident.SEVERITIES[record["severity"]]
        say(
            f"{record['id']} opened ({sev.name}: respond within {sev.response_minutes} min, "
            f"update every {sev.update_minutes or 'as needed'} min, post-mortem "
            f"{sev.post_mortem.lower()})"
        )


@task(
    help={
        "env": ENV,
        "id": "INC-YYYYmmddHHMMSS",
        "status": "investigating, identified, monitoring or resolved",
        "message": "what we know and what we are doing",
        "json": "print JSON",
    }
)
@cli
def update(c, env, id, status, message, json=False):  # noqa: A002
    """Add a status update to an incident and post it to Slack (seed 13.2)."""
    record = _run(env, incident.UPDATE, {"id": id, "status": status, "message": message}, json)
    if not json:
        say(incident.status_update_text(record))


@task(
    help={
        "env": ENV,
        "id": "INC-YYYYmmddHHMMSS",
        "message": "how it was resolved",
        "json": "print JSON",
    }
)
@cli
def resolve(c, env, id, message, json=False):  # noqa: A002
    """Resolve an incident (status resolved, end time set) and post it to Slack."""
    record = _run(env, incident.UPDATE, {"id": id, "status": "resolved", "message": message}, json)
    if not json:
        say(f"{record['id']} resolved after {incident.duration(record)}")


def _records(env):
    s = settings.load(env)
    with hosts.session(s, [s.primary_host]) as state:
        return incident.list_all(state.inventory.get_host(s.primary_host.name), s)


@task(help={"env": ENV, "json": "print JSON"})
@cli
def list(c, env, json=False):  # noqa: A001
    """List incidents with status, severity and overdue-update reminders."""
    records, now = _records(env), datetime.now(UTC)
    if json:
        emit_json([{**r, "overdue": incident.overdue(r, now)} for r in records])
        return
    rows = [
        (
            r["id"],
            r["severity"],
            r["status"],
            r["type"],
            r["title"][:40],
            incident.overdue(r, now) or "-",
        )
        for r in records
    ]
    say(table(("id", "sev", "status", "type", "title", "reminder"), rows))


@task(help={"env": ENV, "id": "INC-YYYYmmddHHMMSS", "output": "write the Markdown to this file"})
@cli
def report(c, env, id, output=None):  # noqa: A002
    """Render the incident report (seed 15.2) from the record's real timeline."""
    s = settings.load(env)
    with hosts.session(s, [s.primary_host]) as state:
        record = incident.load(state.inventory.get_host(s.primary_host.name), s, id)
    text = incident.report_markdown(record)
    if output:
        with builtins.open(output, "w") as f:  # `open` is this module's task
            f.write(text)
        say(f"wrote {output}")
    else:
        say(text)
