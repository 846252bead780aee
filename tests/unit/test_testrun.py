"""Test runs (seed 5.2) as pure functions: the plan, coverage from istanbul's json-summary and
from lcov, thresholds, the seed's summary block."""

import json

import pytest

from cerniq_ops import team, testrun
from cerniq_ops.errors import BadInput

pytestmark = pytest.mark.unit
T = team.load()

SUMMARY = {
    "total": {
        "lines": {"total": 40, "covered": 33, "skipped": 0, "pct": 82.5},
        "statements": {"total": 42, "covered": 34, "skipped": 0, "pct": 80.95},
        "functions": {"total": 10, "covered": 7, "skipped": 0, "pct": 70},
        "branches": {"total": 8, "covered": 6, "skipped": 0, "pct": 75},
    }
}

LCOV = """TN:
SF:src/a.js
FNF:4
FNH:3
BRF:4
BRH:2
LF:10
LH:9
end_of_record
SF:src/b.js
FNF:1
FNH:1
BRF:0
BRH:0
LF:10
LH:7
end_of_record
"""


def test_seed_thresholds_are_the_defaults():
    assert testrun.thresholds(T) == {
        "lines": 80.0,
        "branches": 75.0,
        "functions": 80.0,
        "statements": 80.0,
    }


def test_e2e_is_skipped_unless_asked_and_commands_are_argument_lists():
    parts = testrun.plan(T, e2e=False)
    assert [(p.name, p.status) for p in parts] == [
        ("unit", "pending"),
        ("integration", "pending"),
        ("e2e", "skip"),
    ]
    assert parts[0].argv == ["npm", "run", "test:unit"]
    assert testrun.plan(T, e2e=True)[2].status == "pending"


def test_istanbul_summary_and_thresholds_name_each_shortfall():
    pct = testrun.from_summary(json.dumps(SUMMARY))
    assert pct == {"lines": 82.5, "branches": 75.0, "functions": 70.0, "statements": 80.95}
    assert testrun.check_thresholds(pct, testrun.thresholds(T)) == ["functions 70% < 80%"]


def test_lcov_totals_over_files():
    assert testrun.from_lcov(LCOV) == {
        "lines": 80.0,
        "branches": 50.0,
        "functions": 80.0,
        "statements": 80.0,
    }


def test_summary_is_the_seeds_block():
    parts = testrun.plan(T, e2e=False)
    parts[0].status, parts[1].status = "pass", "fail"
    cov = testrun.Coverage(
        "coverage/coverage-summary.json", status="fail", detail="functions 70% < 80%"
    )
    assert testrun.summary_text(parts, cov) == (
        "=== Test Summary ===\n"
        "Unit Tests:        ✅ PASS\n"
        "Integration Tests: ❌ FAIL\n"
        "E2E Tests:         ⏭️  SKIP\n"
        "Coverage:          ❌ FAIL (functions 70% < 80%)\n"
        "\n"
        "❌ Some checks failed"
    )
    assert not testrun.ok(parts, cov)


def test_an_unknown_threshold_is_bad_input():
    bad = {**T, "tests": {**T["tests"], "thresholds": {"lines": 80, "mutations": 50}}}
    with pytest.raises(BadInput, match="unknown metric"):
        testrun.thresholds(bad)
