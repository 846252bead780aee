"""`invoke test` against a real sample app: its commands run (node's test runner) and write real
coverage (lcov.info and istanbul's coverage-summary.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from testbed.sample_app import make_sample_app
from tests.support.cli import invoke

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]


def summary_lines(stdout: str) -> list[str]:
    return stdout[stdout.index("=== Test Summary ===") :].splitlines()


def test_the_sample_app_passes_every_part(tmp_path):
    app = make_sample_app(tmp_path)
    r = invoke("test", "--repo", str(app))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert summary_lines(r.stdout) == [
        "=== Test Summary ===",
        "Unit Tests:        ✅ PASS",
        "Integration Tests: ✅ PASS",
        "E2E Tests:         ⏭️  SKIP",
        "Coverage:          ✅ PASS",
        "",
        "✅ All tests passed!",
    ]
    assert (app / "coverage/coverage-summary.json").exists()


def test_coverage_under_a_threshold_fails_with_exit_1_naming_the_metrics(tmp_path):
    app = make_sample_app(tmp_path, low_coverage=True)
    r = invoke("test", "--repo", str(app), "--json")
    assert r.returncode == 1, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert [p["status"] for p in report["parts"]] == ["pass", "pass", "skip"]
    assert report["coverage"]["status"] == "fail"
    assert report["coverage"]["source"] == "coverage/coverage-summary.json"
    assert [f.split()[0] for f in report["coverage"]["failures"]] == [
        "lines",
        "functions",
        "statements",
    ]
    assert report["coverage"]["pct"]["lines"] < 80


def test_a_failing_unit_test_and_a_failing_e2e_under_run_e2e_fail_the_run(tmp_path):
    app = make_sample_app(tmp_path, failing_unit=True, e2e_ok=False)
    r = invoke("test", "--repo", str(app), env={"RUN_E2E": "true"})
    assert r.returncode == 1
    lines = summary_lines(r.stdout)
    assert lines[1:4] == [
        "Unit Tests:        ❌ FAIL",
        "Integration Tests: ✅ PASS",
        "E2E Tests:         ❌ FAIL",
    ]


def test_lcov_is_read_when_the_app_writes_no_summary(tmp_path, monkeypatch):
    app = make_sample_app(tmp_path)
    data = yaml.safe_load((PROJECT / "team.yml").read_text())
    data["tests"]["coverage"] = (
        "node --test --experimental-test-coverage --test-reporter=lcov"
        " --test-reporter-destination=coverage/lcov.info test/unit/"
    )
    (app / "coverage").mkdir()
    team_file = tmp_path / "team.yml"
    team_file.write_text(yaml.safe_dump(data, sort_keys=False))
    r = invoke("test", "--repo", str(app), "--json", env={"CERNIQ_TEAM_FILE": str(team_file)})
    report = json.loads(r.stdout)
    assert report["coverage"]["source"] == "coverage/lcov.info"
    assert report["coverage"]["pct"] == {
        "lines": 100.0,
        "branches": 100.0,
        "functions": 100.0,
        "statements": 100.0,
    }
    assert (r.returncode, report["ok"]) == (0, True)


def test_a_folder_that_is_not_a_repo_is_bad_input(tmp_path):
    r = invoke("test", "--repo", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: app repository {tmp_path / 'nope'} does not exist; pass --repo PATH"
    )
