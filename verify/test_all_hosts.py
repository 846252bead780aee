"""Checks of every host of the environment: disk space and the append-only audit log."""

from __future__ import annotations

import json
import shlex

import pytest

from cerniq_ops import audit_checks as ac
from cerniq_ops.clock import now_utc
from verify.helpers import problems_or_pass, read, read_bytes

BASELINE = ".audit-verified"  # under app_root: line count + sha256 of the log a verify passed


def _disk_paths(settings, spec) -> list[str]:
    paths = [settings.app_root]
    if "app_servers" in spec.roles:
        paths.append("/var/lib/docker")
    if "db_servers" in spec.roles:
        paths.append(settings.backup_dir)
    return paths


@pytest.mark.hosts("all")
def test_disk(host, spec, settings, detail):
    """Every filesystem we write to (app_root, docker, backups) is below the warning threshold."""
    disks = ac.parse_df(host.run(ac.df_command(_disk_paths(settings, spec))).stdout)
    if not disks:
        pytest.fail(f"df found none of {', '.join(_disk_paths(settings, spec))}", pytrace=False)
    problems = ac.disk_problems(disks, settings.disk_warn_percent)
    used = ", ".join(f"{d.mount} {d.used_percent}%" for d in disks)
    problems_or_pass(problems, detail, f"{used} (warning above {settings.disk_warn_percent}%)")


@pytest.mark.hosts("all")
def test_audit_log(host, settings, detail, pytestconfig):
    """audit.log present, one valid JSON record per line, time never going back, and still
    starting with exactly the lines the previous passing verify saw (else it was rewritten)."""
    root = settings.app_root.rstrip("/")
    path = f"{root}/audit.log"
    content = read_bytes(host, path)
    if content is None:
        pytest.fail(f"{path} is missing", pytrace=False)
    mode = host.file(path).mode
    baseline_path = f"{root}/{BASELINE}"
    try:
        baseline = json.loads(read(host, baseline_path) or "null")
    except ValueError:
        baseline = None
    problems = ac.audit_problems(path, content, baseline, env=settings.env)
    if mode & 0o022:
        problems.append(f"{path} is writable by group or others (mode {mode:o})")
    lines = ac.audit_lines(content)
    if not problems and not pytestconfig.getoption("--cerniq-read-only"):
        _record_baseline(host, baseline_path, ac.audit_baseline(lines, now_utc()))
    since = f"; unchanged prefix of {baseline['lines']} line(s)" if baseline else ""
    problems_or_pass(problems, detail, f"{path}: {len(lines)} record(s){since}")


def _record_baseline(host, path: str, baseline: dict) -> None:
    temp = f"{path}.tmp"
    q = shlex.quote
    out = host.run(
        f"umask 077 && printf '%s\\n' {q(json.dumps(baseline, sort_keys=True))} > {q(temp)}"
        f" && mv -f {q(temp)} {q(path)}"
    )
    if out.rc != 0:
        pytest.fail(f"could not record {path}: {out.stderr.strip()[:120]}", pytrace=False)
