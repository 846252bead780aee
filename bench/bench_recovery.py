"""Bench: N rolling deploys killed at random moments, each followed by the same deploy again.

Brings up a testbed of its own (prefix cqrbench, 10.87.0.0/24), deploys v1.0.0 to staging and
production, then N times, under keep-alive load through both production hosts' Traefik:
start `invoke deploy --env production` to the other version, SIGKILL its process group at a
random moment (uniform in [0, --window] seconds after it started; the seed is printed),
`invoke lock.release`, and run the same deploy again. A round converged when the re-run exits
0 and `invoke verify` passes. Prints converged/N, the repairs the re-runs reported, and the
failed requests of the whole sequence. Takes the testbed down at the end. The window's default
(35 s) is a little over one production deploy here (~29 s), so most kills land inside it.

    .venv/bin/python bench/bench_recovery.py [--rounds 10] [--window 35] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerniq_ops import settings  # noqa: E402
from cerniq_ops.output import say  # noqa: E402
from cerniq_ops.verification import verify  # noqa: E402
from testbed import images  # noqa: E402
from testbed.lifecycle import TestbedManager, read_env_file  # noqa: E402
from testbed.load import Load  # noqa: E402
from testbed.plan import Testbed  # noqa: E402
from tests.support.cli import invoke  # noqa: E402
from tests.support.interrupt import kill_after  # noqa: E402

SKIP_CI = ("--skip-ci-check", "--reason", "bench")
CONFIRM = ("--confirm", "DEPLOY PRODUCTION")
RELEASE = ("lock.release", "--env", "production", "--confirm", "RELEASE production")


def deploy_args(env: str, version: str) -> tuple[str, ...]:
    extra = CONFIRM if env == "production" else ()
    return ("deploy", "--env", env, "--version", version, *SKIP_CI, *extra)


def verified(env: str) -> tuple[bool, str]:
    """Every check of `invoke verify` passes (the deploy verifies its own backup)."""
    try:
        result = verify(env)
    except Exception as exc:  # the checks could not run: not converged, say why
        return False, str(exc)
    failures = result.failures
    return bool(result.checks) and not failures, result.failure_text() if failures else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--window", type=float, default=35.0, help="seconds after the start")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--prefix", default="cqrbench")
    parser.add_argument("--net", default="10.87.0")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    say(f"seed {seed} (--seed {seed} repeats the kill moments)")
    root = Path(__file__).resolve().parents[1]
    manager = TestbedManager(
        Testbed(dir=root / f".testbed-{args.prefix}", prefix=args.prefix, net=args.net)
    )
    manager.up()
    os.environ.update(read_env_file(manager.tb.env_file))
    try:
        images.publish_app(manager.registry(), "cerniq", "v1.1.0")
        for env in ("staging", "production"):
            r = invoke(*deploy_args(env, "v1.0.0"))
            assert r.returncode == 0, r.stdout + r.stderr
        prod = settings.load("production")
        urls = [f"http://{h.address}:{prod.health_port}" for h in prod.app_hosts]
        converged, repairs, steps, version = 0, Counter(), Counter(), "v1.1.0"
        with Load(urls, workers=4, max_seconds=3 * 3600) as load:
            for number in range(1, args.rounds + 1):
                delay = round(rng.uniform(0.0, args.window), 2)
                killed = kill_after(deploy_args("production", version), r"^== deploy", delay)
                died_in = re.findall(r"\[\d+/\d+\] (\w+)", killed.output)
                steps[died_in[-1] if died_in else "start"] += 1
                invoke(*RELEASE)
                rerun = invoke(*deploy_args("production", version))
                ok, why = verified("production") if rerun.returncode == 0 else (False, "")
                lines = re.findall(r"repaired: (.*)", rerun.stdout)
                repairs.update(re.sub(r"v\d+\.\d+\.\d+", "V", line) for line in lines)
                converged += ok
                tail = (rerun.stderr.strip().splitlines() or [""])[-1]
                say(
                    f"round {number}: killed {delay}s in ({died_in[-1] if died_in else '-'}"
                    f"{', it had ended' if killed.ended else ''}); re-run exit "
                    f"{rerun.returncode}; {'converged' if ok else 'NOT converged'}; "
                    f"{len(lines)} repair(s){'; ' + tail if rerun.returncode else ''}"
                    f"{'; ' + why if why else ''}"
                )
                version = "v1.0.0" if version == "v1.1.0" else "v1.1.0"
        result = load.result
        say(f"killed in step: {dict(steps)}")
        say(f"repairs reported: {dict(repairs)}")
        say(
            f"recovery: converged {converged}/{args.rounds}; {result.total} requests, "
            f"{result.failed} failed ({result.failed / max(result.total, 1):.4%}); seed {seed}"
        )
    finally:
        manager.down()


if __name__ == "__main__":
    main()
