"""Paging the secondary (seed 12.1: 5 minutes for P1/P2) and channel routing (seed 13.1), pure."""

from datetime import UTC, datetime, timedelta

import pytest

from cerniq_ops import incident, notify, oncall, team

pytestmark = pytest.mark.unit
T = team.load()
T0 = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)


def opened(sev="P1"):
    return incident.new_incident(
        at=T0,
        env="production",
        severity_name=sev,
        title="API down",
        who="carmen",
        oncall={"primary": "carmen", "secondary": "dan"},
    )


def test_a_p1_unacknowledged_past_5_minutes_pages_the_secondary_once():
    r = opened()
    assert not oncall.page_due(T, r, T0 + timedelta(minutes=4, seconds=59))
    assert oncall.page_due(T, r, T0 + timedelta(minutes=5))
    paged = oncall.with_page(r, T0 + timedelta(minutes=5), "dan", "record", "recorded")
    assert paged["pages"] == [
        {
            "at": "2026-03-30T10:05:00Z",
            "role": "secondary",
            "who": "dan",
            "via": "record",
            "delivery": "recorded",
        }
    ]
    assert paged["timeline"][-1]["event"] == (
        "paged secondary dan via record: primary did not acknowledge"
    )
    assert not oncall.page_due(T, paged, T0 + timedelta(hours=1))


def test_an_acknowledged_p1_or_a_p3_is_never_paged():
    acked = incident.update(opened(), T0 + timedelta(minutes=2), "identified", "on it", "carmen")
    assert not oncall.page_due(T, acked, T0 + timedelta(hours=1))
    assert not oncall.page_due(T, opened("P3"), T0 + timedelta(hours=1))


def test_the_pagerduty_event_is_events_api_v2():
    event = oncall.pagerduty_event("R0UT1NGKEY", opened("P2"), "dan", "ops-runner")
    assert event == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "trigger",
        "dedup_key": f"{opened('P2')['id']}-secondary",
        "payload": {
            "summary": f"[P2] API down ({opened('P2')['id']}): primary did not acknowledge;"
            " paging secondary dan",
            "source": "ops-runner",
            "severity": "error",
            "timestamp": "2026-03-30T10:00:00Z",
            "component": "cerniq",
            "group": "production",
            "class": "incident",
            "custom_details": {
                "incident": opened("P2")["id"],
                "status": "investigating",
                "primary": "carmen",
                "secondary": "dan",
            },
        },
    }


@pytest.mark.parametrize(
    "kind,channel",
    [
        ("deploy", "#deployments"),
        ("rollback", "#deployments"),
        ("incident", "#incidents"),
        ("status_update", "#incidents"),
        ("verify_failure", "#alerts"),
        ("auto_rollback", "#alerts"),
        ("overdue_update", "#alerts"),
        ("review_nudge", "#alerts"),
    ],
)
def test_every_message_kind_goes_to_its_channel(kind, channel, monkeypatch):
    for var in T["channels"].values():
        monkeypatch.setenv(var, f"https://hooks.slack.test/{var}")
    r = notify.route(kind, "https://hooks.slack.test/default", T)
    assert (r.channel, r.webhook, r.fallback) == (
        channel,
        f"https://hooks.slack.test/{T['channels'][channel]}",
        False,
    )


def test_an_unset_channel_webhook_or_unknown_kind_falls_back_to_the_default(monkeypatch):
    for var in T["channels"].values():
        monkeypatch.delenv(var, raising=False)
    assert notify.route("deploy", "https://d", T) == notify.Route(
        "deploy", "#deployments", "https://d", True
    )
    assert notify.route("something", "https://d", T).webhook == "https://d"
