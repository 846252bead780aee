"""Incident response (seed 11, 13.2, 15.2): records, status updates, reports.

An incident is one JSON document `{app_root}/incidents/INC-YYYYmmddHHMMSS.json` on the
environment's primary host, written atomically. Everything that builds or changes a record is a
pure function here; the few that touch hosts take a pyinfra Host.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyinfra.api.host import Host

from cerniq_ops import hosts, notify
from cerniq_ops.audit import actor
from cerniq_ops.clock import TIME_FORMAT, parse_time
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.output import redact_obj
from cerniq_ops.procedure import Context, step
from cerniq_ops.settings import Settings

STATUSES = ("investigating", "identified", "monitoring", "resolved")
ROLLBACK_STATUSES = ("in_progress", "completed", "failed")
SEPARATOR = "--cerniq-incident--"
MAX_SAME_SECOND = 60  # ids tried after a taken one (a second each)


@dataclass(frozen=True)
class Severity:
    name: str
    description: str
    response_minutes: int
    resolution_target: str
    notification: str
    update_minutes: int | None  # None: "as needed"
    post_mortem_hours: int | None  # None: optional / not required
    post_mortem: str


# Seed 11.1, as data.
SEVERITIES = {
    "P1": Severity(
        "P1",
        "Complete service outage or security breach",
        5,
        "1 hour",
        "PagerDuty + All hands",
        15,
        24,
        "Required within 24 hours",
    ),
    "P2": Severity(
        "P2",
        "Major functionality degraded",
        15,
        "4 hours",
        "PagerDuty + Slack",
        30,
        48,
        "Required within 48 hours",
    ),
    "P3": Severity(
        "P3", "Minor functionality affected", 60, "1 business day", "Slack", 120, None, "Optional"
    ),
    "P4": Severity(
        "P4",
        "Cosmetic issues or minor bugs",
        240,
        "1 week",
        "Ticket only",
        None,
        None,
        "Not required",
    ),
}


def severity(name: str) -> Severity:
    key = (name or "").upper()
    if key not in SEVERITIES:
        raise BadInput(f"unknown severity {name!r}; choose one of: {', '.join(SEVERITIES)}")
    return SEVERITIES[key]


def fmt(at: datetime) -> str:
    return at.strftime(TIME_FORMAT)


def new_id(at: datetime) -> str:
    return "INC-" + at.strftime("%Y%m%d%H%M%S")


INCIDENT_ID = re.compile(r"INC-[0-9]{14}")


def validate_id(incident_id: str) -> str:
    if not INCIDENT_ID.fullmatch(incident_id):  # ASCII digits only, no trailing newline
        raise BadInput(f"invalid incident id {incident_id!r}: expected INC-YYYYmmddHHMMSS")
    return incident_id


def new_incident(
    *,
    at: datetime,
    env: str,
    severity_name: str,
    title: str,
    who: str,
    kind: str = "incident",
    summary: str = "",
    **fields: Any,
) -> dict[str, Any]:
    sev = severity(severity_name)
    if not title.strip():
        raise BadInput("an incident needs a --title")
    record = {
        "id": new_id(at),
        "type": kind,
        "env": env,
        "title": title.strip(),
        "severity": sev.name,
        "status": "in_progress" if kind == "rollback" else "investigating",
        "summary": summary,
        "started_at": fmt(at),
        "triggered_by": who,
        "updates": [],
        "timeline": [{"at": fmt(at), "event": f"{kind} opened by {who}: {title.strip()}"}],
        **fields,
    }
    return redact_obj(record)


def add_event(record: dict, at: datetime, event: str) -> dict:
    return redact_obj(
        {**record, "timeline": [*record["timeline"], {"at": fmt(at), "event": event}]}
    )


def update(record: dict, at: datetime, status: str, message: str, who: str) -> dict:
    allowed = ROLLBACK_STATUSES if record.get("type") == "rollback" else STATUSES
    if status not in allowed:
        raise BadInput(f"unknown status {status!r}; choose one of: {', '.join(allowed)}")
    if record.get("completed_at"):
        raise BadInput(f"{record['id']} is already closed ({record['status']})")
    changed = add_event(record, at, f"status {status} ({who}): {message}")
    changed["status"] = status
    changed["updates"] = [
        *record.get("updates", []),
        {"at": fmt(at), "status": status, "message": message, "by": who},
    ]
    if status in ("resolved", "completed", "failed"):
        changed["completed_at"] = fmt(at)
    return redact_obj(changed)


def next_update_due(record: dict) -> datetime | None:
    """When the next status update is due (seed 11.1 cadence); None when closed or as needed."""
    if record.get("completed_at"):
        return None
    sev = SEVERITIES.get(record.get("severity", ""))
    if not sev or sev.update_minutes is None:
        return None
    last = record["updates"][-1]["at"] if record.get("updates") else record["started_at"]
    return parse_time(last) + timedelta(minutes=sev.update_minutes)


def overdue(record: dict, now: datetime) -> str | None:
    due = next_update_due(record)
    if due and now > due:
        minutes = int((now - due).total_seconds() // 60)
        every = SEVERITIES[record["severity"]].update_minutes
        return (
            f"status update overdue by {minutes} min (every {every} min for {record['severity']})"
        )
    return None


def duration(record: dict) -> str:
    if not record.get("completed_at"):
        return "ongoing"
    seconds = int(
        (parse_time(record["completed_at"]) - parse_time(record["started_at"])).total_seconds()
    )
    hours, rest = divmod(seconds, 3600)
    return f"{hours} hours {rest // 60} minutes"


def status_update_text(record: dict, impact: str = "", current: str = "") -> str:
    """The seed's Incident Status Update Template (13.2), filled in."""
    sev = SEVERITIES.get(record.get("severity", ""))
    last = record["updates"][-1]["message"] if record.get("updates") else record.get("summary", "")
    cadence = f"In {sev.update_minutes} minutes." if sev and sev.update_minutes else "As needed."
    status = record["status"].replace("_", " ").title()
    return (
        f"**Incident:** {record['id']}\n**Severity:** {record['severity']}\n"
        f"**Status:** {status}\n\n**Summary:**\n{record['title']}\n\n"
        f"**Impact:**\n{impact or '- Users affected: unknown'}\n"
        f"- Start time: {record['started_at'].replace('T', ' ').replace('Z', ' UTC')}\n\n"
        f"**Current Status:**\n{current or last or 'Investigating.'}\n\n"
        f"**Next Update:**\n{'None: closed.' if record.get('completed_at') else cadence}"
    )


def report_markdown(record: dict) -> str:
    """The seed's Incident Report Template (15.2), from the record and its real timeline."""

    def when(text: str | None) -> str:
        return text.replace("T", " ").replace("Z", " UTC") if text else "-"

    timeline = "\n".join(
        f"| {e['at'][11:16]} | {e['event'].replace('|', '/')} |" for e in record["timeline"]
    )
    updates = [u["message"] for u in record.get("updates", [])]
    return (
        f"# Incident Report: {record['title']}\n\n"
        "## Summary\n| Field | Value |\n|-------|-------|\n"
        f"| Incident ID | {record['id']} |\n| Severity | {record['severity']} |\n"
        f"| Start Time | {when(record['started_at'])} |\n"
        f"| End Time | {when(record.get('completed_at'))} |\n"
        f"| Duration | {duration(record)} |\n| Impact | {record.get('summary') or '-'} |\n\n"
        f"## Timeline\n| Time | Event |\n|------|-------|\n{timeline}\n\n"
        f"## Root Cause\n{record.get('root_cause') or 'To be written in the post-mortem.'}\n\n"
        f"## Resolution\n{updates[-1] if updates else 'Not resolved yet.'}\n\n"
        "## Lessons Learned\nTo be written in the post-mortem.\n\n"
        "## Action Items\n| Item | Owner | Due Date |\n|------|-------|----------|\n"
    )


# -- on the host ------------------------------------------------------------------------------
def incidents_dir(s: Settings) -> str:
    return f"{s.app_root}/incidents"


def save(host: Host, s: Settings, record: dict) -> None:
    hosts.write_file(
        host,
        f"{incidents_dir(s)}/{record['id']}.json",
        json.dumps(record, indent=2, sort_keys=True) + "\n",
        "640",
    )


def create(host: Host, s: Settings, record: dict) -> dict:
    """Save a new RECORD under the first free id from its own on: two incidents opened in the
    same second (two alerts, two engineers) get consecutive ids, never one file. Returns the
    record as saved."""
    at = parse_time(record["started_at"])
    for later in range(MAX_SAME_SECOND):
        saved = {**record, "id": new_id(at + timedelta(seconds=later))}
        text = json.dumps(saved, indent=2, sort_keys=True) + "\n"
        if hosts.create_file(host, f"{incidents_dir(s)}/{saved['id']}.json", text, "640"):
            return saved
    raise StepFailed(
        f"{host.name}: {MAX_SAME_SECOND} incident ids from {record['id']} on are all taken"
    )


def load(host: Host, s: Settings, incident_id: str) -> dict:
    text = hosts.read_file(host, f"{incidents_dir(s)}/{validate_id(incident_id)}.json")
    if text is None:
        raise BadInput(
            f"no incident {incident_id} on {s.env}; see `invoke incident.list --env {s.env}`"
        )
    return json.loads(text)


def list_all(host: Host, s: Settings) -> list[dict]:
    folder = incidents_dir(s)
    _, out, _ = hosts.sh(
        host,
        f'for f in {shlex.quote(folder)}/INC-*.json; do [ -e "$f" ] || continue;'
        f' cat "$f"; echo; echo {SEPARATOR}; done',
    )
    records = [json.loads(chunk) for chunk in out.split(SEPARATOR) if chunk.strip()]
    return sorted(records, key=lambda r: r["id"])


# -- procedures (run by procedure.run; no deploy lock: incidents are written during deploys) ----
def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@step(offline=True)
def validate_incident(ctx: Context) -> str:
    sev = severity(ctx.options["severity"])
    if not ctx.options.get("title", "").strip():
        raise BadInput("an incident needs a --title")
    return f"{sev.name}: respond within {sev.response_minutes} min, notify {sev.notification}"


def on_call(at: datetime) -> dict[str, str]:
    """Who is on call at AT (team.yml rotation and overrides); {} when the rules cannot be read:
    an incident is never refused for that."""
    from cerniq_ops import oncall, team

    try:
        t = team.load()
        row = oncall.rotation(t, oncall.load_overrides(t)).who(at)
    except (BadInput, KeyError, TypeError, ValueError):  # a broken team.yml is reported elsewhere
        return {}
    return {"primary": row.primary, "secondary": row.secondary}


@step()
def open_incident(ctx: Context) -> str:
    at = _now()
    record = new_incident(
        at=at,
        env=ctx.env,
        severity_name=ctx.options["severity"],
        title=ctx.options["title"],
        who=actor(),
        summary=ctx.options.get("summary", ""),
        oncall=on_call(at),
    )
    record = create(ctx.primary, ctx.settings, record)
    ctx.facts["incident"] = record
    return f"{record['id']} opened"


@step()
def update_incident(ctx: Context) -> str:
    record = load(ctx.primary, ctx.settings, ctx.options["id"])
    record = update(record, _now(), ctx.options["status"], ctx.options["message"], actor())
    save(ctx.primary, ctx.settings, record)
    ctx.facts["incident"] = record
    return f"{record['id']} is {record['status']}"


@step()
def notify_team(ctx: Context) -> str:
    """Post the seed's status update (13.2) to Slack."""
    record = ctx.facts["incident"]
    title = f"{record['id']} [{record['severity']}] {record['title']}: {record['status']}"
    fields = {
        "Incident": record["id"],
        "Severity": record["severity"],
        "Status": record["status"],
        "Environment": ctx.env,
    }
    if (record.get("oncall") or {}).get("primary"):
        fields["On call"] = record["oncall"]["primary"]
    ok = record["status"] in ("resolved", "completed")
    payload = notify.slack_payload(notify.Fields(title, fields, ok, status_update_text(record)))
    kind = "status_update" if record.get("updates") else "incident"  # channels: #incidents
    return notify.post_kind(kind, ctx.settings.secret("slack_webhook_env"), payload).detail


OPEN = (validate_incident, open_incident, notify_team)
UPDATE = (update_incident, notify_team)
