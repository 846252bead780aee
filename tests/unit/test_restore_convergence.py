"""backup.restore's convergence logic with a fake db host: it records the commands and answers
the database listing from a script, so every leftover of a killed run is checked offline."""

from __future__ import annotations

import json
import shlex

import pytest

from cerniq_ops import backup, hosts, settings
from cerniq_ops.backup import remote
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context

pytestmark = pytest.mark.unit

ID = "20261128T231500Z-production-manual"


class FakeDbHost:
    """hosts.sh stand-in: records each command; psql of DATABASES_SQL answers DATABASES."""

    name = "db1.cerniq.app"

    def __init__(self, databases: list[dict]) -> None:
        self.databases = databases
        self.commands: list[list[str]] = []

    def sh(self, host, command, *, check=True, timeout=600):
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        self.commands.append(argv)
        if backup.DATABASES_SQL in argv:
            return True, json.dumps(self.databases), ""
        return True, "", ""

    def statements(self) -> list[str]:
        return [a[a.index("-c") + 1] for a in self.commands if "-c" in a]


@pytest.fixture
def ctx(monkeypatch) -> Context:
    s = settings.load("production", target="real")
    c = Context(s, "backup.restore", progress=lambda _: None)
    c.facts.update(backup_id=ID, backup={"id": ID})
    monkeypatch.setattr(remote, "_db_host", lambda _ctx: "db-host")  # what _psql looks up
    return c


def run_converge(ctx, monkeypatch, databases):
    fake = FakeDbHost(databases)
    monkeypatch.setattr(hosts, "sh", fake.sh)
    detail = backup.converge_earlier_restore(ctx)
    return fake, detail


def test_nothing_left_means_nothing_done(ctx, monkeypatch):
    fake, detail = run_converge(ctx, monkeypatch, [{"name": "cerniq", "allow": True}])
    assert detail == "nothing left by an earlier restore"
    assert fake.statements() == [backup.DATABASES_SQL] and ctx.repairs == []


def test_a_half_restored_database_is_dropped_and_connections_reopened(ctx, monkeypatch):
    fake, _ = run_converge(
        ctx,
        monkeypatch,
        [
            {"name": "cerniq", "allow": False},
            {"name": "cerniq_scratch_restore_ab12", "allow": True},
            {"name": "cerniq_scratch_verify_cd34", "allow": True},  # a verify's: not ours here
        ],
    )
    assert fake.statements()[1:] == [
        'DROP DATABASE IF EXISTS "cerniq_scratch_restore_ab12" WITH (FORCE)',
        'ALTER DATABASE "cerniq" ALLOW_CONNECTIONS true',
    ]
    assert ctx.repairs == [
        "dropped cerniq_scratch_restore_ab12, left by a restore that died before its swap",
        "cerniq accepts connections again (a restore died while closing it)",
    ]
    assert "resume" not in ctx.facts


def test_an_unconfirmed_swap_of_this_backup_is_completed_not_redone(ctx, monkeypatch):
    before = "20261128T231400Z-production-pre-restore"
    record = {"cerniq": "previous", "of": "cerniq", "env": "production", "backup": ID,
              "state": "swapped", "pre_restore_backup": before}  # fmt: skip
    fake, _ = run_converge(
        ctx,
        monkeypatch,
        [
            {"name": "cerniq", "allow": True},
            {"name": "cerniq_previous_x", "allow": False, "comment": json.dumps(record)},
        ],
    )
    assert fake.statements() == [backup.DATABASES_SQL]  # nothing dropped, nothing renamed
    assert ctx.facts["resume"] == ctx.facts["previous_db"] == "cerniq_previous_x"
    assert ctx.repairs == [
        f"cerniq was already swapped to {ID} by a run that died before confirming it "
        "(old data in cerniq_previous_x): confirming it now"
    ]
    assert backup.swap_databases(ctx).startswith("skipped")
    assert backup.restore_into_new_database(ctx) == "skipped: already swapped in"


def test_an_unconfirmed_swap_of_another_backup_is_kept_under_the_delay(ctx, monkeypatch):
    record = {"cerniq": "previous", "of": "cerniq", "env": "production", "backup": "other",
              "state": "swapped"}  # fmt: skip
    fake, _ = run_converge(
        ctx,
        monkeypatch,
        [
            {"name": "cerniq", "allow": True},
            {"name": "cerniq_previous_y", "allow": False, "comment": json.dumps(record)},
        ],
    )
    [comment] = fake.statements()[1:]
    assert comment.startswith('COMMENT ON DATABASE "cerniq_previous_y" IS ')
    kept = json.loads(comment.split(" IS ", 1)[1].strip("'"))
    assert kept["state"] == "kept" and kept["drop_after"] and "resume" not in ctx.facts
    assert ctx.repairs == ["cerniq_previous_y (left unconfirmed by a restore of other) kept"]


def test_a_missing_live_database_stops_the_restore_naming_the_kept_ones(ctx, monkeypatch):
    record = {"cerniq": "previous", "of": "cerniq", "state": "kept"}
    with pytest.raises(StepFailed) as exc:
        run_converge(
            ctx,
            monkeypatch,
            [
                {"name": "cerniq_previous_z", "allow": False, "comment": json.dumps(record)}
            ],  # fmt: skip
        )
    assert str(exc.value) == (
        "database cerniq does not exist on db1.cerniq.app; kept databases: cerniq_previous_z "
        "(rename one back by hand)"
    )
