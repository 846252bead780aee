"""Bench: the rolling deploy under live traffic, and its wall time for 1 vs 2 app hosts.

Brings up a testbed of its own (prefix cqbench, 10.89.0.0/24), deploys v1.0.0 to staging
(1 app host) and production (2 app hosts), then, side by side in one run:
  1. rolling deploys alternating v1.1.0 / v1.0.0 on production under keep-alive load through
     both hosts' Traefik until at least --requests requests were made: failed / total;
  2. the wall time of the same version change on staging (1 host) and on production
     (2 hosts, one wave each), printed with their ratio.
Takes the testbed down at the end.

    .venv/bin/python bench/bench_deploy.py [--requests 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerniq_ops import settings  # noqa: E402
from cerniq_ops.deploy import deploy  # noqa: E402
from cerniq_ops.output import say  # noqa: E402
from cerniq_ops.procedure import Context  # noqa: E402
from testbed import images  # noqa: E402
from testbed.lifecycle import TestbedManager, read_env_file  # noqa: E402
from testbed.load import Load  # noqa: E402
from testbed.plan import Testbed  # noqa: E402

OPTIONS = {"skip_ci_check": True, "reason": "bench", "confirm": "DEPLOY PRODUCTION", "batch": "1"}


def run_deploy(env: str, version: str) -> float:
    start = time.monotonic()
    deploy(
        Context(
            settings.load(env), "deploy", version=version, options=OPTIONS, progress=lambda _: None
        )
    )
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2, help="timed deploys per environment")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    manager = TestbedManager(Testbed(dir=root / ".testbed-bench", prefix="cqbench", net="10.89.0"))
    manager.up()
    os.environ.update(read_env_file(manager.tb.env_file))
    try:
        images.publish_app(manager.registry(), "cerniq", "v1.1.0")
        for env in ("staging", "production"):
            run_deploy(env, "v1.0.0")
        prod = settings.load("production")
        urls = [f"http://{h.address}:{prod.health_port}" for h in prod.app_hosts]
        deploys, version = 0, "v1.1.0"
        with Load(urls, workers=4) as load:
            while load.result.total < args.requests or deploys == 0:
                run_deploy("production", version)
                deploys += 1
                version = "v1.0.0" if version == "v1.1.0" else "v1.1.0"
        result = load.result
        say(
            f"rolling deploys under load: {deploys} deploys, {result.total} requests, "
            f"{result.failed} failed ({result.failed / max(result.total, 1):.4%}); "
            f"versions served: {dict(result.versions)}"
        )
        times: dict[str, list[float]] = {"staging": [], "production": []}
        for _ in range(args.rounds):
            for env in ("staging", "production"):
                times[env].append(run_deploy(env, version))
            version = "v1.0.0" if version == "v1.1.0" else "v1.1.0"
        one, two = statistics.median(times["staging"]), statistics.median(times["production"])
        say(
            f"deploy wall time, median of {args.rounds}: 1 app host {one:.1f}s, "
            f"2 app hosts {two:.1f}s; ratio 2 hosts / 1 host = {two / one:.2f}"
        )
    finally:
        manager.down()


if __name__ == "__main__":
    main()
