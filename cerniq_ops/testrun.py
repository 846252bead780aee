"""Test runs (seed 5.2 run-tests.sh): the app's unit, integration and (optionally) e2e commands
from team.yml `tests`, then the coverage report and its thresholds, and the seed's summary.

Coverage is read from istanbul's json-summary (coverage-summary.json: total.<metric>.pct) or,
when that file is absent, from lcov.info (LF/LH, BRF/BRH, FNF/FNH; statements = lines).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cerniq_ops.errors import BadInput

METRICS = ("lines", "branches", "functions", "statements")
PARTS = (("unit", "Unit Tests"), ("integration", "Integration Tests"), ("e2e", "E2E Tests"))


@dataclass
class Part:
    name: str
    label: str
    argv: list[str]
    status: str = "pending"  # pass | fail | skip
    exit_code: int | None = None
    seconds: float = 0.0


@dataclass
class Coverage:
    source: str
    pct: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    status: str = "pending"
    detail: str = ""


def thresholds(t: dict) -> dict[str, float]:
    given = t["tests"].get("thresholds", {})
    unknown = sorted(set(given) - set(METRICS))
    if unknown:
        raise BadInput(f"team.yml tests.thresholds: unknown metric(s) {', '.join(unknown)}")
    return {m: float(given[m]) for m in METRICS if m in given}


def plan(t: dict, e2e: bool) -> list[Part]:
    """The parts to run, in the seed's order; e2e is skipped unless asked for."""
    parts = []
    for name, label in PARTS:
        command = t["tests"].get(name)
        if not command:
            raise BadInput(f"team.yml tests.{name} is not set")
        part = Part(name, label, shlex.split(command))
        if name == "e2e" and not e2e:
            part.status = "skip"
        parts.append(part)
    return parts


def run_part(part: Part, root: Path, to_stderr: bool = False) -> Part:
    """Run one command in the app repo; its output goes to ours (to stderr with TO_STDERR)."""
    started = time.monotonic()
    try:
        r = subprocess.run(part.argv, cwd=root, stdout=sys.stderr if to_stderr else None)
        part.exit_code = r.returncode
    except FileNotFoundError:
        part.exit_code = 127
    part.seconds = round(time.monotonic() - started, 2)
    part.status = "pass" if part.exit_code == 0 else "fail"
    return part


def from_summary(text: str) -> dict[str, float]:
    """istanbul json-summary -> {metric: pct}."""
    total = json.loads(text)["total"]
    return {m: float(total[m]["pct"]) for m in METRICS if m in total}


def from_lcov(text: str) -> dict[str, float]:
    """lcov.info totals -> {metric: pct}; statements are lines (lcov has no statements)."""
    sums = dict.fromkeys(("LF", "LH", "BRF", "BRH", "FNF", "FNH"), 0)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in sums and value.strip().isdigit():
            sums[key] += int(value)

    def pct(found: str, hit: str) -> float:
        return round(100.0 * sums[hit] / sums[found], 2) if sums[found] else 100.0

    lines = pct("LF", "LH")
    return {
        "lines": lines,
        "branches": pct("BRF", "BRH"),
        "functions": pct("FNF", "FNH"),
        "statements": lines,
    }


def check_thresholds(pct: dict[str, float], limits: dict[str, float]) -> list[str]:
    failures = []
    for metric, limit in limits.items():
        if metric not in pct:
            failures.append(f"{metric}: not in the coverage report")
        elif pct[metric] < limit:
            failures.append(f"{metric} {pct[metric]:g}% < {limit:g}%")
    return failures


def read_coverage(t: dict, root: Path) -> Coverage:
    summary = root / t["tests"].get("coverage_summary", "coverage/coverage-summary.json")
    lcov = root / t["tests"].get("lcov", "coverage/lcov.info")
    try:
        if summary.exists():
            cov = Coverage(str(summary.relative_to(root)), from_summary(summary.read_text()))
        elif lcov.exists():
            cov = Coverage(str(lcov.relative_to(root)), from_lcov(lcov.read_text()))
        else:
            return Coverage("", status="fail", detail=f"no {summary.name} nor {lcov.name} written")
    except (ValueError, KeyError, TypeError) as exc:
        return Coverage(str(summary.name), status="fail", detail=f"unreadable report: {exc}")
    cov.failures = check_thresholds(cov.pct, thresholds(t))
    cov.status = "fail" if cov.failures else "pass"
    cov.detail = "; ".join(cov.failures)
    return cov


MARK = {"pass": "✅ PASS", "fail": "❌ FAIL", "skip": "⏭️  SKIP"}


def summary_text(parts: list[Part], cov: Coverage) -> str:
    """The seed's `=== Test Summary ===` block (run-tests.sh), with what failed in coverage."""
    rows = [(f"{p.label}:", MARK[p.status]) for p in parts]
    rows.append(("Coverage:", MARK[cov.status] + (f" ({cov.detail})" if cov.detail else "")))
    lines = ["=== Test Summary ==="] + [f"{k:<19}{v}" for k, v in rows]
    ok = all(p.status != "fail" for p in parts) and cov.status == "pass"
    lines += ["", "✅ All tests passed!" if ok else "❌ Some checks failed"]
    return "\n".join(lines)


def ok(parts: list[Part], cov: Coverage) -> bool:
    return all(p.status != "fail" for p in parts) and cov.status == "pass"


def report(parts: list[Part], cov: Coverage) -> dict:
    return {
        "ok": ok(parts, cov),
        "parts": [
            {"name": p.name, "status": p.status, "exit_code": p.exit_code, "seconds": p.seconds}
            for p in parts
        ],
        "coverage": {
            "status": cov.status,
            "source": cov.source,
            "pct": cov.pct,
            "failures": cov.failures,
            "detail": cov.detail,
        },
    }
