"""The on-call rotation (seed 12) with the clock as an argument: DST weeks, overrides, the
schedule, and the handoff checklist filled from in-memory records."""

from datetime import UTC, datetime, timedelta

import pytest

from cerniq_ops import incident, oncall, team
from cerniq_ops.errors import BadInput
from cerniq_ops.lock import LockRecord

pytestmark = pytest.mark.unit
T = team.load()
ROT = oncall.rotation(T)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_the_handoff_stays_at_monday_0900_local_across_the_spring_dst_change():
    # Bucharest leaves EET (UTC+2) for EEST (UTC+3) on Sun 2026-03-29: Monday 30 March 09:00
    # local is 06:00 UTC (the week before it was 07:00 UTC); that week is 167 hours long.
    before, after = ROT.who(utc(2026, 3, 30, 5, 59)), ROT.who(utc(2026, 3, 30, 6, 0))
    assert (before.primary, before.secondary) == ("bogdan", "carmen")
    assert (after.primary, after.secondary) == ("carmen", "dan")
    assert before.shift_start == utc(2026, 3, 23, 7, 0)
    assert before.shift_end == utc(2026, 3, 30, 6, 0)
    assert before.shift_end - before.shift_start == timedelta(hours=167)


def test_the_autumn_dst_week_is_169_hours_and_still_hands_off_at_0900_local():
    # EEST -> EET on Sun 2026-10-25: Monday 26 October 09:00 local is 07:00 UTC
    row = ROT.who(utc(2026, 10, 22, 12, 0))
    assert row.shift_end == utc(2026, 10, 26, 7, 0)
    assert row.shift_end - row.shift_start == timedelta(hours=169)
    assert ROT.who(utc(2026, 10, 26, 6, 59)).primary != ROT.who(utc(2026, 10, 26, 7, 0)).primary


def test_the_rotation_walks_the_people_from_the_anchor_week():
    firsts = [ROT.who(utc(2026, 1, 5, 8, 0) + timedelta(weeks=k)).primary for k in range(6)]
    assert firsts == ["ana", "bogdan", "carmen", "dan", "elena", "ana"]


def test_an_override_replaces_the_primary_only_inside_its_window():
    o = oncall.new_override(T, "elena", utc(2026, 3, 25, 7), utc(2026, 3, 26, 7), "primary", "sick")
    rot = oncall.rotation(T, [o])
    assert rot.who(utc(2026, 3, 25, 12)).primary == "elena"
    assert rot.who(utc(2026, 3, 25, 12)).notes == ["elena covers primary for bogdan (sick)"]
    assert rot.who(utc(2026, 3, 26, 7)).primary == "bogdan"
    rows = oncall.schedule(rot, utc(2026, 3, 20, 8), 3)
    assert [(r.primary, bool(r.notes)) for r in rows] == [
        ("ana", False),
        ("bogdan", True),
        ("carmen", False),
    ]
    assert rows[1].notes == [
        "elena covers primary Wed 2026-03-25 09:00 EET - Thu 2026-03-26 09:00 EET (sick)"
    ]


def test_overrides_round_trip_through_their_file_text():
    o = oncall.new_override(T, "dan", utc(2026, 3, 25, 7), utc(2026, 3, 26, 7), "secondary", "")
    import yaml

    text = oncall.overrides_text([o])
    assert oncall.parse_overrides(yaml.safe_load(text)) == [o]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("zoe", "primary"),
            "unknown person 'zoe'; team.yml people: ana, bogdan, carmen, dan, elena",
        ),
        (("dan", "tertiary"), "unknown role 'tertiary'; choose one of: primary, secondary"),
    ],
)
def test_bad_overrides_are_refused(args, message):
    with pytest.raises(BadInput) as e:
        oncall.new_override(T, args[0], utc(2026, 3, 25), utc(2026, 3, 26), args[1], "")
    assert str(e.value) == message


def inc(at, sev, title, closed=None):
    r = incident.new_incident(at=at, env="production", severity_name=sev, title=title, who="ana")
    if closed:
        r = incident.update(r, closed, "resolved", "fixed", "ana")
    return r


def test_a_handoff_with_two_open_incidents_lists_both_with_severity_and_age():
    now = utc(2026, 3, 30, 6, 0)
    data = oncall.HandoffData(
        incidents=[
            inc(utc(2026, 3, 30, 3, 0), "P1", "API down"),
            inc(utc(2026, 3, 29, 6, 0), "P3", "Slow exports"),
            inc(utc(2026, 3, 26, 6, 0), "P2", "Queue stuck", closed=utc(2026, 3, 26, 8, 0)),
            inc(utc(2026, 3, 1, 6, 0), "P4", "Old typo", closed=utc(2026, 3, 2, 8, 0)),
        ],
        lock=LockRecord("ana@ci", "deploy", "v1.5.0", "", "2026-03-30T05:00:00Z", "t"),
        audit=[
            {
                "at": "2026-03-28T10:00:00Z",
                "procedure": "deploy",
                "version": "v1.4.9",
                "step": "roll_api",
                "result": "failed",
                "who": "dan",
            },
            {
                "at": "2026-03-28T11:00:00Z",
                "procedure": "deploy",
                "version": "v1.5.0",
                "step": "roll_api",
                "result": "ok",
                "who": "dan",
            },
        ],
        backup_problems=["newest backup b1 is 2 d 1 h old (limit 26 h)"],
        backup_summary="newest b1",
    )
    incoming, outgoing = ROT.who(now), ROT.who(now - timedelta(seconds=1))
    text = oncall.handoff_text(T, data, outgoing, incoming, now)
    assert text.splitlines() == [
        "On-call handoff Mon 2026-03-30 09:00 EEST (production): primary bogdan -> carmen,"
        " secondary carmen -> dan",
        "",
        "- [ ] Review open incidents: 2 open",
        f"    - {data.incidents[0]['id']} P1 investigating, open 3 h 0 min: API down",
        f"    - {data.incidents[1]['id']} P3 investigating, open 1 d 0 h 0 min: Slow exports",
        "    past 7 days: 3 incident(s)",
        f"    - {data.incidents[0]['id']} P1 API down (open)",
        f"    - {data.incidents[1]['id']} P3 Slow exports (open)",
        f"    - {data.incidents[2]['id']} P2 Queue stuck (closed 2026-03-26T08:00:00Z)",
        f"- [ ] Note any expected alerts: {data.incidents[0]['id']} status updates every 15 min;"
        f" {data.incidents[1]['id']} status updates every 120 min",
        "- [ ] Highlight known issues: 3",
        "    - deploy lock held by ana@ci since 2026-03-30T05:00:00Z (deploy)",
        "    - deploy v1.4.9 failed at roll_api on 2026-03-28T10:00:00Z (dan)",
        "    - newest backup b1 is 2 d 1 h old (limit 26 h)",
        "- [ ] Share any context needed: backups: newest b1",
        "- [ ] Confirm contact information:",
        "    - primary carmen: @carmen, +40 700 000 003",
        "    - secondary dan: @dan, +40 700 000 004",
    ]
