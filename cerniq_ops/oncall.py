"""On-call (seed 12): the weekly rotation as data (team.yml `oncall`), overrides for swaps and
absences, who is on call at a given time, the schedule, and the handoff checklist filled from
live data. Pure except `load_overrides`/`save_overrides`; the clock is always an argument.

Weeks start at the handoff (Monday 09:00 in the team's time zone): a week is seven local days,
so across a DST change it is 167 or 169 hours long and the handoff stays at 09:00 local.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from cerniq_ops import team
from cerniq_ops.business import WEEKDAYS
from cerniq_ops.clock import parse_iso
from cerniq_ops.errors import BadInput

ROLES = ("primary", "secondary")


@dataclass(frozen=True)
class Override:
    role: str
    who: str
    start: datetime
    end: datetime
    reason: str = ""

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def to_dict(self) -> dict[str, str]:
        return {
            "role": self.role,
            "who": self.who,
            "from": self.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": self.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Rotation:
    zone: ZoneInfo
    weekday: int
    handoff: time
    anchor: date
    people: tuple[str, ...]
    secondary_offset: int
    overrides: tuple[Override, ...] = ()

    # -- weeks --------------------------------------------------------------------------
    def shift_start(self, at: datetime) -> datetime:
        """The handoff that began the shift running at AT (local wall clock, DST-aware), in UTC
        (aware datetimes sharing a tzinfo subtract by wall clock: UTC keeps durations true)."""
        local = at.astimezone(self.zone)
        day = local.date() - timedelta(days=(local.weekday() - self.weekday) % 7)
        start = datetime.combine(day, self.handoff, self.zone)
        if start > at:
            start = datetime.combine(day - timedelta(days=7), self.handoff, self.zone)
        return start.astimezone(UTC)

    def next_handoff(self, start: datetime) -> datetime:
        day = start.astimezone(self.zone).date() + timedelta(days=7)
        return datetime.combine(day, self.handoff, self.zone).astimezone(UTC)

    def week_index(self, start: datetime) -> int:
        return (start.astimezone(self.zone).date() - self.anchor).days // 7

    # -- who ----------------------------------------------------------------------------
    def base(self, at: datetime) -> tuple[str, str]:
        k = self.week_index(self.shift_start(at))
        n = len(self.people)
        return self.people[k % n], self.people[(k + self.secondary_offset) % n]

    def who(self, at: datetime) -> OnCall:
        primary, secondary = self.base(at)
        notes = []
        for o in self.overrides:
            if o.covers(at):
                was = primary if o.role == "primary" else secondary
                if o.role == "primary":
                    primary = o.who
                else:
                    secondary = o.who
                notes.append(
                    f"{o.who} covers {o.role} for {was}" + (f" ({o.reason})" if o.reason else "")
                )
        start = self.shift_start(at)
        return OnCall(at, primary, secondary, start, self.next_handoff(start), notes)


@dataclass(frozen=True)
class OnCall:
    at: datetime
    primary: str
    secondary: str
    shift_start: datetime
    shift_end: datetime
    notes: list[str] = field(default_factory=list)


def _weekday(text: str) -> int:
    if text not in WEEKDAYS:
        raise BadInput(f"team.yml oncall.handoff.weekday {text!r}: one of {', '.join(WEEKDAYS)}")
    return WEEKDAYS.index(text)


def rotation(t: dict, overrides: Sequence[Override] = ()) -> Rotation:
    o = t["oncall"]
    people = tuple(o["rotation"])
    unknown = [p for p in people if p not in t["people"]]
    if not people or unknown:
        raise BadInput(f"team.yml oncall.rotation: unknown or no people {unknown or ''}".strip())
    anchor = date.fromisoformat(str(o["anchor"]))
    weekday = _weekday(o["handoff"]["weekday"])
    if anchor.weekday() != weekday:
        raise BadInput(f"team.yml oncall.anchor {anchor} is not a {o['handoff']['weekday']}")
    return Rotation(
        ZoneInfo(o["time_zone"]),
        weekday,
        time.fromisoformat(str(o["handoff"]["time"])),
        anchor,
        people,
        int(o.get("secondary_offset", 1)),
        tuple(overrides),
    )


# -- overrides --------------------------------------------------------------------------------
def new_override(
    t: dict, who: str, start: datetime, end: datetime, role: str, reason: str
) -> Override:
    if who not in t["people"]:
        raise BadInput(f"unknown person {who!r}; team.yml people: {', '.join(t['people'])}")
    if role not in ROLES:
        raise BadInput(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    if end <= start:
        raise BadInput("an override needs --to after --from")
    return Override(role, who, start, end, reason)


def parse_overrides(data: Any) -> list[Override]:
    result = []
    for i, item in enumerate(data or []):
        try:
            result.append(
                Override(
                    item["role"],
                    item["who"],
                    parse_iso(str(item["from"])),
                    parse_iso(str(item["to"])),
                    item.get("reason", ""),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise BadInput(
                f"on-call override #{i + 1} is malformed (role, who, from, to)"
            ) from None
    return result


def overrides_path(t: dict) -> Path:
    return team.project_path(t["oncall"]["overrides_file"])


def load_overrides(t: dict) -> list[Override]:
    path = overrides_path(t)
    if not path.exists():
        return []
    try:
        return parse_overrides(yaml.safe_load(path.read_text()))
    except yaml.YAMLError:
        raise BadInput(f"{path} is not valid YAML") from None


def overrides_text(overrides: Sequence[Override]) -> str:
    header = "# On-call overrides (swaps, absences): written by `invoke oncall.override`.\n"
    return header + yaml.safe_dump([o.to_dict() for o in overrides], sort_keys=False)


def save_overrides(t: dict, overrides: Sequence[Override]) -> None:
    path = overrides_path(t)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(overrides_text(overrides))
    tmp.replace(path)


# -- schedule ---------------------------------------------------------------------------------
def schedule(rot: Rotation, start_at: datetime, weeks: int) -> list[OnCall]:
    """The shifts from the one running at START_AT, WEEKS of them; each notes the overrides
    that touch it."""
    if weeks < 1:
        raise BadInput("--weeks must be 1 or more")
    rows, start = [], rot.shift_start(start_at)
    for _ in range(weeks):
        end = rot.next_handoff(start)
        primary, secondary = rot.base(start)
        notes = [
            f"{o.who} covers {o.role} {_local(o.start, rot.zone)} - {_local(o.end, rot.zone)}"
            + (f" ({o.reason})" if o.reason else "")
            for o in rot.overrides
            if o.start < end and o.end > start
        ]
        rows.append(OnCall(start, primary, secondary, start, end, notes))
        start = end
    return rows


def _local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def local(at: datetime, t: dict) -> str:
    return _local(at, ZoneInfo(t["oncall"]["time_zone"]))


# -- handoff (seed 12.2) ------------------------------------------------------------------------
DEPLOY_PROCEDURES = ("deploy", "bluegreen", "canary", "rollback")


@dataclass(frozen=True)
class HandoffData:
    """What the handoff reads: incident records, the deploy lock, the audit log's recent records,
    backup problems (strings from cerniq_ops.audit_checks.backup_problems) and its summary."""

    incidents: list[dict]
    lock: Any | None  # cerniq_ops.lock.LockRecord
    audit: list[dict]
    backup_problems: list[str]
    backup_summary: str = ""
    env: str = "production"


def _age(since: datetime, now: datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return (f"{days} d " if days else "") + f"{hours} h {mins} min"


def handoff_text(
    t: dict, data: HandoffData, outgoing: OnCall, incoming: OnCall, now: datetime
) -> str:
    """The seed's handoff checklist (12.2), every item filled from DATA."""
    past = now - timedelta(days=int(t["oncall"].get("past_days", 7)))
    open_ = [r for r in data.incidents if not r.get("completed_at")]
    week = [r for r in data.incidents if parse_iso(r["started_at"]) >= past]
    lines = [
        f"On-call handoff {local(now, t)} ({data.env}): primary {outgoing.primary} -> "
        f"{incoming.primary}, secondary {outgoing.secondary} -> {incoming.secondary}",
        "",
        f"- [ ] Review open incidents: {len(open_)} open",
    ]
    for r in open_:
        age = _age(parse_iso(r["started_at"]), now)
        lines.append(f"    - {r['id']} {r['severity']} {r['status']}, open {age}: {r['title']}")
    lines.append(f"    past {t['oncall'].get('past_days', 7)} days: {len(week)} incident(s)")
    for r in week:
        state = "open" if not r.get("completed_at") else f"closed {r['completed_at']}"
        lines.append(f"    - {r['id']} {r['severity']} {r['title']} ({state})")
    expected = [*incoming.notes] + [
        f"{r['id']} status updates every {_cadence(r)}" for r in open_ if _cadence(r)
    ]
    lines.append("- [ ] Note any expected alerts: " + ("; ".join(expected) or "none recorded"))
    issues = []
    if data.lock is not None:
        issues.append(
            f"deploy lock held by {data.lock.holder} since {data.lock.since}"
            f" ({data.lock.procedure})"
        )
    failed = [
        a
        for a in data.audit
        if a.get("result") == "failed"
        and a.get("procedure") in DEPLOY_PROCEDURES
        and parse_iso(a["at"]) >= past
    ]
    for a in failed:
        version = f" {a['version']}" if a.get("version") else ""
        issues.append(
            f"{a['procedure']}{version} failed at {a.get('step')} on {a['at']} ({a.get('who')})"
        )
    issues += data.backup_problems
    lines.append("- [ ] Highlight known issues: " + ("none" if not issues else f"{len(issues)}"))
    lines += [f"    - {i}" for i in issues]
    context = data.backup_summary and f"backups: {data.backup_summary}"
    lines.append(f"- [ ] Share any context needed: {context or 'add it in the thread'}")
    lines.append("- [ ] Confirm contact information:")
    for role, person in (("primary", incoming.primary), ("secondary", incoming.secondary)):
        p = t["people"].get(person, {})
        lines.append(f"    - {role} {person}: {p.get('slack', '-')}, {p.get('phone', '-')}")
    return "\n".join(lines)


def _cadence(record: dict) -> str:
    from cerniq_ops.incident import SEVERITIES

    sev = SEVERITIES.get(record.get("severity", ""))
    return f"{sev.update_minutes} min" if sev and sev.update_minutes else ""


# -- where the handoff's data comes from --------------------------------------------------------
def folder_data(folder: Path, env: str) -> HandoffData:
    """HandoffData from a local folder laid out like the primary host's app_root: incidents/
    INC-*.json, deploy.lock (JSON), audit.log (JSON lines). Backups are not in it."""
    import json

    from cerniq_ops import lock

    if not folder.is_dir():
        raise BadInput(f"--source {folder} is not a folder")
    records = [json.loads(p.read_text()) for p in sorted((folder / "incidents").glob("INC-*.json"))]
    lock_file = folder / "deploy.lock"
    held = lock.parse(lock_file.read_text()) if lock_file.exists() else None
    audit_file = folder / "audit.log"
    audit = []
    for line in audit_file.read_text().splitlines() if audit_file.exists() else []:
        try:
            audit.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return HandoffData(records, held, audit, [], "not checked (folder source)", env)


def live_data(s: Any, now: datetime) -> HandoffData:
    """HandoffData read from ENV's hosts: incidents, lock and audit log on the primary host,
    backups on the db host (audit limit backup_max_verified_age_hours)."""
    from cerniq_ops import audit, backup, hosts, incident, lock
    from cerniq_ops.audit_checks import backup_problems

    targets = [s.primary_host]
    db = s.hosts_in("db_servers")
    if db:
        targets.append(s.db_host)
    with hosts.session(s, targets) as state:
        primary = state.inventory.get_host(s.primary_host.name)
        records = incident.list_all(primary, s)
        _, held = lock.read(primary, s)
        recent = audit.read(primary, s, limit=500)
        problems, summary = [], "no db host in the inventory"
        if db:
            dbh = state.inventory.get_host(s.db_host.name)
            _, out, _ = hosts.sh(dbh, backup.listing_argv(s.backup_dir))
            backups = backup.parse_listing(out).backups
            problems, summary = backup_problems(
                backups,
                s.env,
                f"{s.db_host.name}:{s.backup_dir}",
                now,
                s.backup_max_verified_age_hours,
            )
    return HandoffData(records, held, recent, problems, summary, s.env)


# -- paging (seed 12.1 response time, 11.1 notification) ----------------------------------------
def acknowledged(record: dict) -> bool:
    """The primary acknowledged: an explicit acknowledged_at, or any status update after open."""
    return bool(record.get("acknowledged_at") or record.get("updates"))


def page_due(t: dict, record: dict, now: datetime) -> bool:
    """An open P1/P2 incident its primary has not acknowledged within the response time, whose
    secondary was not paged yet."""
    o = t["oncall"]
    sev = record.get("severity")
    if record.get("completed_at") or sev not in o.get("page_severities", []):
        return False
    if acknowledged(record) or any(p.get("role") == "secondary" for p in record.get("pages", [])):
        return False
    minutes = o.get("response_minutes", {}).get(sev)
    if minutes is None:
        return False
    return now >= parse_iso(record["started_at"]) + timedelta(minutes=float(minutes))


def pagerduty_event(routing_key: str, record: dict, who: str, source: str) -> dict:
    """A PagerDuty Events API v2 trigger for paging WHO about RECORD (dedup per incident+role)."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": f"{record['id']}-secondary",
        "payload": {
            "summary": f"[{record['severity']}] {record['title']} ({record['id']}): primary did not"
            f" acknowledge; paging secondary {who}"[:1024],
            "source": source,
            "severity": "critical" if record["severity"] == "P1" else "error",
            "timestamp": record["started_at"],
            "component": "cerniq",
            "group": record.get("env", ""),
            "class": "incident",
            "custom_details": {
                "incident": record["id"],
                "status": record["status"],
                "primary": (record.get("oncall") or {}).get("primary"),
                "secondary": who,
            },
        },
    }


def with_page(record: dict, now: datetime, who: str, channel: str, delivered: str) -> dict:
    """RECORD with the page recorded (pages list and a timeline event)."""
    from cerniq_ops import incident

    page = {
        "at": incident.fmt(now),
        "role": "secondary",
        "who": who,
        "via": channel,
        "delivery": delivered,
    }
    changed = incident.add_event(
        record, now, f"paged secondary {who} via {channel}: primary did not acknowledge"
    )
    changed["pages"] = [*record.get("pages", []), page]
    return changed


class Pager:
    """Pages the secondary of due incidents: PagerDuty Events v2 when the routing key variable
    (team.yml oncall.pagerduty_routing_key_env) is set, always a Slack message (kind `page`)."""

    def __init__(self, t: dict, rot: Rotation, default_webhook: str | None):
        import os

        from cerniq_ops.output import register_secret

        self.t, self.rot, self.webhook = t, rot, default_webhook
        self.key = os.environ.get(t["oncall"].get("pagerduty_routing_key_env", "")) or None
        register_secret(self.key)

    def maybe_page(self, record: dict, at: datetime) -> tuple[dict | None, dict | None]:
        """(the record with its page recorded, a result line) when a page is due; the record is
        returned only when the page went out (a failed one is retried by the next run)."""
        import socket

        from cerniq_ops import notify
        from cerniq_ops.clients import pagerduty

        if not page_due(self.t, record, at):
            return None, None
        who = (record.get("oncall") or {}).get("secondary") or self.rot.who(at).secondary
        if self.key:
            event = pagerduty_event(self.key, record, who, socket.gethostname())
            sent, detail = pagerduty.send(self.t["oncall"]["pagerduty_events_url"], event)
            channel = "PagerDuty"
        else:
            sent, detail, channel = True, "recorded (no PagerDuty routing key set)", "record"
        handle = self.t["people"].get(who, {}).get("slack", who)
        text = (
            f"{handle}: {record['id']} [{record['severity']}] {record['title']} was not"
            " acknowledged within the response time; you are paged as secondary."
        )
        fields = {"Incident": record["id"], "Severity": record["severity"], "Paged": who}
        payload = notify.slack_payload(notify.Fields(f"Page: {record['id']}", fields, False, text))
        slack = notify.post_kind("page", self.webhook, payload, self.t).detail
        result = {"id": record["id"], "paged": who, "sent": sent, "detail": f"{detail}; {slack}"}
        return (with_page(record, at, who, channel, detail) if sent else None), result
