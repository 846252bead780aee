"""Incident records are named by the second they open in (INC-YYYYmmddHHMMSS): two opened in
the same second must both be kept. hosts.create_file and incident.create run for real on this
machine (pyinfra's @local connector); the exclusive-create command raced by real shells."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all

from cerniq_ops import hosts, incident
from deploys.operations import link_new_command

pytestmark = pytest.mark.integration


@pytest.fixture
def local():
    state = State(Inventory((["@local"], {})), Config())
    connect_all(state)
    (host,) = state.inventory
    yield host
    disconnect_all(state)


def test_create_file_never_replaces_an_existing_file(local, tmp_path):
    path = tmp_path / "incidents" / "INC-20261207193900.json"  # its folder does not exist yet
    assert hosts.create_file(local, str(path), "first\n", "640")
    assert not hosts.create_file(local, str(path), "second\n", "640")
    assert path.read_text() == "first\n"
    assert oct(stat.S_IMODE(os.stat(path).st_mode)) == "0o640"
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left


def test_two_incidents_opened_in_the_same_second_are_both_kept(local, tmp_path):
    s = type("S", (), {"app_root": str(tmp_path)})()
    at = datetime(2026, 12, 7, 17, 39, 0, tzinfo=UTC)
    opened = [
        incident.create(
            local,
            s,
            incident.new_incident(at=at, env="staging", severity_name=sev, title=title, who="ana"),
        )
        for sev, title in (("P1", "checkout down"), ("P3", "slow exports"))
    ]
    assert [r["id"] for r in opened] == ["INC-20261207173900", "INC-20261207173901"]
    assert [r["started_at"] for r in opened] == ["2026-12-07T17:39:00Z"] * 2
    on_disk = {
        p.name: json.loads(p.read_text())["title"] for p in (tmp_path / "incidents").iterdir()
    }
    assert on_disk == {
        "INC-20261207173900.json": "checkout down",
        "INC-20261207173901.json": "slow exports",
    }


def test_of_writers_racing_for_one_name_exactly_one_wins(tmp_path):
    path = tmp_path / "INC-20261207173900.json"
    racers = []
    for n in range(8):
        temp = tmp_path / f".INC.tmp-{n}"
        temp.write_text(f"writer {n}\n")
        command = link_new_command(str(temp), str(path), "640")
        racers.append(subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, text=True))
    said = sorted(p.communicate()[0].strip() for p in racers)
    assert said == ["created"] + ["exists"] * 7
    assert os.listdir(tmp_path) == [path.name]  # every temporary file removed
    assert path.read_text().startswith("writer ")
