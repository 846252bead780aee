"""Bench: the rolling deploy's wall time with 1, 2 and 4 production app hosts, side by side.

Brings up three testbeds of its own at once (prefixes cqb1, cqb2, cqb4 on 10.91.1, .2 and .4;
production with 1, 2 and 4 app hosts), deploys v1.0.0 to staging and production on each, then
--rounds times, in turn on each testbed (so the machine's noise falls on all three alike) and
under a keep-alive load through every production host of the three: `invoke deploy --env
production` to the other version (the default: every host in one wave), timed as a user sees
it. Then a converged re-run on each (nothing to change). Prints the median wall times, the
SSH logins a deploy opens (counted in the production hosts' sshd logs), one host's replace
(the rolling_update step on the 1-host testbed) against its floor (for each service in turn,
a container of the next version started and its first healthy check, on that host, in the
same rounds), the ratios to one host, the failed requests, and last `4 hosts / 1 host = X`
(goal: <= 1.3).
Takes the testbeds down at the end.

    .venv/bin/python bench/bench_deploy.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerniq_ops.output import say  # noqa: E402
from testbed import images  # noqa: E402
from testbed.lifecycle import TestbedManager, read_env_file  # noqa: E402
from testbed.load import Load  # noqa: E402
from testbed.plan import Testbed  # noqa: E402

INVOKE = str(Path(sys.executable).parent / "invoke")
SKIP_CI = ("--skip-ci-check", "--reason", "bench")
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
COUNTS = (1, 2, 4)


def deploy(env_vars: dict[str, str], env: str, version: str) -> tuple[float, str]:
    """`invoke deploy` as a user runs it on one testbed: (seconds, stdout); exits on failure."""
    extra = CONFIRM if env == "production" else ()
    start = time.monotonic()
    done = subprocess.run(
        [INVOKE, "deploy", "--env", env, "--version", version, *SKIP_CI, *extra],
        cwd=ROOT,
        env=env_vars,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"deploy {env} {version} failed:\n{done.stdout}{done.stderr}")
    return seconds, done.stdout


def ssh_logins(manager: TestbedManager) -> int:
    """SSH logins accepted so far by the testbed's production hosts (their sshd logs)."""
    tb = manager.tb
    total = 0
    for host in tb.hosts:
        log = tb.host_dir(host) / "log" / "sshd.log"
        if host.env == "production" and log.exists():
            total += log.read_text(errors="replace").count("Accepted publickey")
    return total


def step_seconds(out: str, step: str) -> float:
    """The seconds the runner printed for STEP (`[4/9] rolling_update` ... `ok: ... (12.3s)`)."""
    found = re.search(rf"\] {step}\n(?:.*\n)*?\s+ok: .*\((\d+\.\d)s\)", out)
    if not found:
        raise SystemExit(f"no time for {step} in:\n{out}")
    return float(found.group(1))


# one container of IMAGE started with the app's health check (compose.py), timed on the host
# until its first healthy check, then removed
FLOOR = (
    "start=$(date +%s.%N); id=$(docker run -d --health-interval 1s --health-timeout 3s "
    "--health-retries 3 --health-cmd 'wget -q -O /dev/null http://127.0.0.1/health' {image}); "
    "until [ \"$(docker inspect -f '{{{{.State.Health.Status}}}}' $id)\" = healthy ]; "
    "do sleep 0.05; done; end=$(date +%s.%N); docker rm -f $id >/dev/null; "
    'awk "BEGIN {{ print $end - $start }}"'
)


def floor_seconds(manager: TestbedManager, version: str) -> float:
    """One production host's floor for VERSION: for each service in turn (as the rolling
    update replaces them), a container started and its first healthy check."""
    total = 0.0
    for service in ("api", "web", "workers"):
        image = f"{manager.tb.registry_address}/cerniq/{service}:{version}"
        done = subprocess.run(
            [
                "ssh",
                "-F",
                str(manager.tb.ssh_config),
                "prod-app1-root",
                FLOOR.format(image=shlex.quote(image)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise SystemExit(f"floor of {image} failed: {done.stderr}")
        total += float(done.stdout.strip())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    managers = {
        n: TestbedManager(
            Testbed(
                dir=ROOT / f".testbed-bench{n}",
                prefix=f"cqb{n}",
                net=f"10.91.{n}",
                production_app_hosts=n,
            )
        )
        for n in COUNTS
    }
    try:
        environ: dict[int, dict[str, str]] = {}
        urls: list[str] = []
        for n, manager in managers.items():
            manager.up()
            images.publish_app(manager.registry(), "cerniq", "v1.1.0")
            environ[n] = {**os.environ, **read_env_file(manager.tb.env_file)}
            for env in ("staging", "production"):
                deploy(environ[n], env, "v1.0.0")
            urls += [
                f"http://{h.ip}:64000" for h in manager.tb.hosts if h.name.startswith("prod-app")
            ]
        times: dict[int, list[float]] = {n: [] for n in COUNTS}
        logins: dict[int, list[int]] = {n: [] for n in COUNTS}
        replace: list[float] = []
        floor: list[float] = []
        rerun: dict[int, tuple[float, bool]] = {}
        version = "v1.1.0"
        with Load(urls, workers=6) as load:
            load.wait_for_requests(200)
            for _ in range(args.rounds):
                floor.append(floor_seconds(managers[1], version))
                for n in COUNTS:
                    before = ssh_logins(managers[n])
                    seconds, out = deploy(environ[n], "production", version)
                    times[n].append(seconds)
                    logins[n].append(ssh_logins(managers[n]) - before)
                    if n == 1:
                        replace.append(step_seconds(out, "rolling_update"))
                version = "v1.0.0" if version == "v1.1.0" else "v1.1.0"
            last = "v1.0.0" if version == "v1.1.0" else "v1.1.0"
            for n in COUNTS:
                seconds, out = deploy(environ[n], "production", last)
                rerun[n] = (seconds, "every host already runs" in out)
            load.wait_for_requests(load.result.total + 200)
        result = load.result
        medians = {n: statistics.median(times[n]) for n in COUNTS}
        for n in COUNTS:
            shown = ", ".join(f"{t:.1f}" for t in times[n])
            say(
                f"{n} production app host(s): median {medians[n]:.1f}s ({shown}); "
                f"converged re-run {rerun[n][0]:.1f}s, "
                f"{'0 changes' if rerun[n][1] else 'CHANGED SOMETHING'}; "
                f"SSH logins per deploy {statistics.median(logins[n]):.0f} "
                f"({statistics.median(logins[n]) / (n + 1):.1f} per host)"
            )
        say(
            f"one host's replace: {statistics.median(replace):.1f}s, floor "
            f"{statistics.median(floor):.1f}s (each service's container started and first "
            f"healthy, in turn) = {statistics.median(replace) / statistics.median(floor):.2f}x"
        )
        say(
            f"under load through all {len(urls)} hosts: {result.total} requests, "
            f"{result.failed} failed; served {dict(result.versions)}"
        )
        say(f"2 hosts / 1 host = {medians[2] / medians[1]:.2f}")
        say(f"4 hosts / 1 host = {medians[4] / medians[1]:.2f}")
    finally:
        for manager in managers.values():
            manager.down()


if __name__ == "__main__":
    main()
