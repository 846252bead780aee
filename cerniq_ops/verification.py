"""`invoke verify`: is every host in the state the tooling says? (testinfra checks in verify/)

`verify(env)` runs the checks of verify/ with pytest in a subprocess (its own process: pytest can
be run many times, also from inside another pytest run such as the e2e tests), collects one
result per check per host, and returns a Result. `--junit FILE` is pytest's own JUnit XML.

    from cerniq_ops.verification import verify
    result = verify("production")          # or verify(settings), verify(..., host="prod-app1")
    assert result.ok, result.failure_text()

The e2e tests of the procedures call `assert_verified(env)` after each change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cerniq_ops import settings as settings_mod
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.settings import PROJECT_DIR, Settings

VERIFY_DIR = PROJECT_DIR / "verify"
STATUS_ORDER = ("fail", "error", "skip", "pass")
LABELS = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "skip": "SKIP"}
CHECK_ORDER = (
    "files",
    "markers",
    "containers",
    "traefik",
    "active_color",
    "maintenance",
    "deploy_lock",
    "unfinished_run",
    "backup",
    "disk",
    "audit_log",
)


@dataclass(frozen=True)
class CheckResult:
    host: str
    check: str
    status: str  # pass | fail | error | skip
    detail: str
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")


@dataclass
class Result:
    env: str
    checks: list[CheckResult] = field(default_factory=list)
    junit: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUS_ORDER}

    def get(self, host: str, check: str) -> CheckResult | None:
        return next((c for c in self.checks if c.host == host and c.check == check), None)

    def lines(self) -> list[str]:
        return format_lines(self.checks)

    def summary(self) -> str:
        return summary_line(self.env, self.checks)

    def failure_text(self) -> str:
        return "\n".join(format_lines(self.failures)) or "no failures"

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "ok": self.ok,
            "counts": self.counts(),
            "hosts": sorted({c.host for c in self.checks}),
            "checks": [asdict(c) for c in self.checks],
            "junit": self.junit,
        }


# -- pure ------------------------------------------------------------------------------------
def pytest_argv(
    env: str,
    results: str,
    host: str | None = None,
    junit: str | None = None,
    read_only: bool = False,
) -> list[str]:
    """The pytest command line running verify/ for ENV (results as JSON lines into RESULTS)."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(VERIFY_DIR),
        "--rootdir",
        str(PROJECT_DIR),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-o",
        "addopts=",
        "--strict-markers",
        "--cerniq-env",
        env,
        "--cerniq-results",
        results,
    ]
    if host:
        argv += ["--cerniq-host", host]
    if junit:
        argv += ["--junit-xml", junit, "-o", "junit_suite_name=cerniq-verify-" + env]
    if read_only:
        argv.append("--cerniq-read-only")
    return argv


def parse_results(text: str, host_order: list[str]) -> list[CheckResult]:
    """The plugin's JSON lines as CheckResults, by host (inventory order), then check order."""
    rows: list[tuple[int, int, int, CheckResult]] = []
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        r = json.loads(line)
        result = CheckResult(r["host"], r["check"], r["status"], r["detail"], r.get("seconds", 0))
        where = host_order.index(r["host"]) if r["host"] in host_order else len(host_order)
        rank = CHECK_ORDER.index(r["check"]) if r["check"] in CHECK_ORDER else len(CHECK_ORDER)
        rows.append((where, rank, number, result))
    return [r for *_, r in sorted(rows, key=lambda t: t[:3])]


def format_lines(checks: list[CheckResult]) -> list[str]:
    """`FAIL  prod-app2   containers    api container 0f3a... is exited (...)`, aligned."""
    if not checks:
        return []
    hw = max(len(c.host) for c in checks)
    cw = max(len(c.check) for c in checks)
    return [
        f"{LABELS.get(c.status, c.status.upper()):<5} {c.host:<{hw}}  {c.check:<{cw}}  {c.detail}"
        for c in checks
    ]


def summary_line(env: str, checks: list[CheckResult]) -> str:
    counts = {s: sum(1 for c in checks if c.status == s) for s in STATUS_ORDER}
    hosts = len({c.host for c in checks})
    bad = counts["fail"] + counts["error"]
    verdict = "FAILED" if bad or not checks else "ok"
    parts = [f"{counts['pass']} passed", f"{counts['fail']} failed"]
    if counts["error"]:
        parts.append(f"{counts['error']} could not run")
    parts.append(f"{counts['skip']} skipped")
    text = f"verify {env}: {verdict}: {', '.join(parts)} ({len(checks)} checks on {hosts} hosts)"
    if bad:
        named = sorted({f"{c.check}@{c.host}" for c in checks if c.failed})
        text += f"; wrong: {', '.join(named)}"
    return text


# -- runner ----------------------------------------------------------------------------------
def verify(
    env: str | Settings,
    host: str | None = None,
    *,
    junit: str | None = None,
    read_only: bool = False,
    timeout: int = 600,
) -> Result:
    """Run every check of verify/ against ENV's hosts (or HOST only); the Result.

    Raises BadInput for an unknown environment or host, StepFailed when the checks could not
    run at all (the Result of checks that ran but failed is returned, not raised).
    """
    s = env if isinstance(env, Settings) else settings_mod.load(env)
    names = [h.name for h in s.hosts]
    if host is not None and host not in names:
        raise BadInput(f"no host '{host}' in {s.env}; hosts: {', '.join(names)}")
    with tempfile.TemporaryDirectory(prefix="cerniq-verify-") as tmp:
        results = Path(tmp) / "results.jsonl"
        results.touch()
        argv = pytest_argv(s.env, str(results), host, junit, read_only)
        environ = {**os.environ, "CERNIQ_TARGET": s.target, "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.run(
                argv,
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=environ,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"verify {s.env} did not finish within {timeout}s") from None
        checks = parse_results(results.read_text(), names)
    if proc.returncode not in (0, 1) or not checks:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:] or ["no output"]
        raise StepFailed(
            f"verify {s.env}: the checks could not run (pytest exit {proc.returncode}): "
            + " | ".join(tail)
        )
    return Result(s.env, checks, junit)


def assert_verified(env: str | Settings, host: str | None = None) -> Result:
    """For tests: verify ENV and raise AssertionError listing every failing check."""
    result = verify(env, host)
    assert result.ok, f"{result.summary()}\n{result.failure_text()}"
    return result
