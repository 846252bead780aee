"""`invoke rollback` after an interrupted one resumes its unfinished incident (fake host)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cerniq_ops import incident, rollback, settings
from cerniq_ops.procedure import Context
from tests.support.fakehost import FakeHost

pytestmark = pytest.mark.unit
ROOT = "/opt/cerniq"


def marker(value: str | None) -> str:
    return "-" if value is None else f"+\n{value}"


def records(*rows: dict) -> str:
    return "".join(f"{json.dumps(r)}\n\n{incident.SEPARATOR}\n" for r in rows)


def rollback_ctx(primary: FakeHost, **options) -> Context:
    s = settings.load("production", target="real")
    state = SimpleNamespace(inventory=SimpleNamespace(get_host=lambda _name: primary))
    return Context(s, "rollback", version=options.pop("to", None), options=options, state=state)


def primary_with(current: str, previous: str, *incidents: dict) -> FakeHost:
    host = FakeHost("app1.cerniq.app")
    host.on(f"if [ -e {ROOT}/current-version ]", marker(current))
    host.on(f"if [ -e {ROOT}/previous-version ]", marker(previous))
    host.on("for f in /opt/cerniq/incidents/INC-*.json", records(*incidents))
    return host


UNFINISHED = {
    "id": "INC-20260101120000",
    "type": "rollback",
    "status": "in_progress",
    "from_version": "v1.5.0",
    "to_version": "v1.4.0",
}


def test_a_rerun_resumes_the_unfinished_rollback_to_the_same_target():
    primary = primary_with("v1.5.0", "v1.4.0", {**UNFINISHED, "status": "completed"}, UNFINISHED)
    ctx = rollback_ctx(primary, to="v1.4.0")
    assert rollback.resolve_target(ctx) == "v1.5.0 -> v1.4.0"
    assert ctx.facts["incident"]["id"] == "INC-20260101120000"
    assert ctx.repairs == [
        "resuming the rollback to v1.4.0 of INC-20260101120000, which an earlier run left "
        "unfinished"
    ]


def test_previous_takes_the_target_of_the_unfinished_rollback_not_the_rewritten_marker(
    monkeypatch,
):
    monkeypatch.setattr(rollback, "_check_published", lambda ctx: None)  # no registry here
    monkeypatch.setenv("CERNIQ_PRODUCTION_DB_PASSWORD", "pw-for-the-digests")
    # the killed run had replaced the primary: its markers now say v1.4.0, previous v1.5.0
    primary = primary_with("v1.4.0", "v1.5.0", UNFINISHED)
    primary.on("sha256sum ", "")  # its files are not the target's yet: not converged
    ctx = rollback_ctx(primary, previous=True)
    assert rollback.resolve_target(ctx) == "v1.5.0 -> v1.4.0"
    assert ctx.version == "v1.4.0" and not ctx.facts.get("converged")


def test_another_target_opens_its_own_incident():
    primary = primary_with("v1.5.0", "v1.4.0", UNFINISHED)
    ctx = rollback_ctx(primary, to="v1.3.0")
    assert rollback.resolve_target(ctx) == "v1.5.0 -> v1.3.0"
    assert "incident" not in ctx.facts and ctx.repairs == []
