"""Bench: blue-green switches under live traffic. Not run by pytest.

Brings up a testbed of its own (prefix cqgbench, 10.88.0.0/24), rolls out v1.0.0 then v1.1.0
with `bluegreen.deploy` on production (2 app hosts, each with its own Traefik), so blue runs
v1.0.0 and green v1.1.0. Then, under keep-alive load through both hosts' entrypoints, it
switches back and forth by writing Traefik's dynamic config (the procedure's own builders and
atomic write) until at least --requests requests and --switches switches were made, and prints:
  1. failed requests / total across all switches (goal: 0 of >= 20,000);
  2. per switch and host, the time from the rename of active.yml (timestamped on the host: the
     testbed's hosts share this machine's clock, so SSH latency is not counted) to the first
     response after which every response of a probe hammering that host comes from the new
     color (goal: median <= 0.5 s over >= 10 switches).
With --kills N it measures recovery instead: N times, `invoke bluegreen.switch` is SIGKILLed
(its process group) at a random moment (seed printed; --seed repeats it), the lock released
and the switch run again; it prints converged/N (the re-run exits 0 and every app host's
marker, Traefik router and run record agree) and the failed requests across all of it.
Takes the testbed down at the end.

    .venv/bin/python bench/bench_bluegreen.py [--requests 20000] [--switches 12]
    .venv/bin/python bench/bench_bluegreen.py --kills 10 [--seed S]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerniq_ops import bluegreen, hosts, settings  # noqa: E402
from cerniq_ops.output import say  # noqa: E402
from cerniq_ops.procedure import Context  # noqa: E402
from testbed import images  # noqa: E402
from testbed.lifecycle import TestbedManager, read_env_file  # noqa: E402
from testbed.load import Load  # noqa: E402
from testbed.plan import Testbed  # noqa: E402

VERSIONS = {"blue": "v1.0.0", "green": "v1.1.0"}


class Probe:
    """One keep-alive connection per host asking /version as fast as it answers: (time, body)."""

    def __init__(self, url: str):
        self.url, self.seen, self._stop = url, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                body = session.get(self.url + "/version", timeout=5).text.strip()
            except requests.RequestException as exc:
                body = type(exc).__name__
            self.seen.append((time.time(), body))

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def settled_after(self, start: float, want: str) -> float | None:
        """Seconds from START to the first answer after which every answer is WANT."""
        after = [(t, body) for t, body in self.seen if t >= start]
        wrong = [t for t, body in after if body != want]
        later = [t for t, body in after if body == want and (not wrong or t > wrong[-1])]
        return later[0] - start if later else None


def rollout(s, version: str, initial: bool = False) -> None:
    ctx = Context(
        s,
        "bluegreen.deploy",
        version=version,
        options={"initial": initial, "confirm": s.confirm_phrase, "analysis_seconds": 0},
        progress=lambda _: None,
    )
    bluegreen.run_procedure(bluegreen.DEPLOY, ctx)


ROOT = Path(__file__).resolve().parents[1]
INVOKE = str(Path(sys.executable).parent / "invoke")
SWITCH = ["bluegreen.switch", "--env", "production", "--confirm", "DEPLOY PRODUCTION"]


def _invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [INVOKE, *args], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def converged(s) -> tuple[bool, str]:
    """Every app host: one marker, Traefik routing that color, no run record left."""
    seen = []
    with hosts.session(s, s.app_hosts) as state:
        for spec in s.app_hosts:
            host = state.inventory.get_host(spec.name)
            marker = (hosts.read_file(host, f"{s.app_root}/{bluegreen.MARKER}") or "").strip()
            routed = bluegreen.routed_service(host)
            pending = hosts.read_file(host, f"{s.app_root}/{bluegreen.PENDING}")
            seen.append((marker, routed, pending))
    ok = len({m for m, _, _ in seen}) == 1 and all(
        r == bluegreen.routed_name(m) and p is None for m, r, p in seen
    )
    return ok, str(seen)


def kills(s, count: int, seed: int, urls: list[str]) -> None:
    os.environ.setdefault("CERNIQ_OVERRIDE_BLUEGREEN_LATENCY_FLOOR", "0.5")  # shared machine
    rng = random.Random(seed)
    say(f"random kills of bluegreen.switch: seed {seed} (--seed {seed} repeats it)")
    good = 0
    with Load(urls, workers=4, max_seconds=24 * 3600) as load:
        load.wait_for_requests(500)
        for i in range(count):
            proc = subprocess.Popen(
                [INVOKE, *SWITCH, "--analysis-seconds", "2"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            at = rng.uniform(0.5, 15)
            try:
                proc.wait(timeout=at)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rerun = _invoke(*SWITCH, "--analysis-seconds", "2")
            if rerun.returncode == 3:
                _invoke("lock.release", "--env", "production", "--confirm", "RELEASE production")
                rerun = _invoke(*SWITCH, "--analysis-seconds", "2")
            ok, seen = converged(s)
            ok = ok and rerun.returncode == 0
            good += ok
            say(f"kill {i + 1} at {at:.1f}s: {'converged' if ok else 'NOT converged: ' + seen}")
        result = load.stop()
    say(
        f"converged {good}/{count}; {result.total} requests, {result.failed} failed "
        f"(goal: {count}/{count}, 0 failed)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--switches", type=int, default=12)
    parser.add_argument("--settle", type=float, default=1.5, help="seconds between switches")
    parser.add_argument("--kills", type=int, default=0, help="measure N killed switches instead")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    manager = TestbedManager(
        Testbed(dir=root / ".testbed-gbench", prefix="cqgbench", net="10.88.0")
    )
    manager.up()
    os.environ.update(read_env_file(manager.tb.env_file))
    try:
        for version in VERSIONS.values():
            images.publish_app(manager.registry(), "cerniq", version)
        s = settings.load("production")
        rollout(s, VERSIONS["blue"], initial=True)
        rollout(s, VERSIONS["green"])
        urls = [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]
        if args.kills:
            seed = args.seed if args.seed is not None else random.randrange(10**6)
            kills(s, args.kills, seed, urls)
            return
        text = {c: bluegreen.render(bluegreen.dynamic_config(c)) for c in VERSIONS}
        path = bluegreen.dynamic_path(s)
        folder, name = path.rsplit("/", 1)
        temp = f"{folder}/.{name}.tmp-bench"
        times: list[float] = []
        switches, color, unsettled = 0, "green", 0
        with hosts.session(s, s.app_hosts) as state:
            targets = [state.inventory.get_host(h.name) for h in s.app_hosts]
            with Load(urls, workers=4) as load:
                load.wait_for_requests(500)
                while load.result.total < args.requests or switches < args.switches:
                    color = bluegreen.other(color)
                    probes = [Probe(u) for u in urls]
                    for probe in probes:
                        probe.__enter__()
                    for host in targets:  # upload first: the timed part is the rename
                        hosts.write_file(host, temp, text[color])
                    time.sleep(0.3)
                    starts = []
                    for host in targets:  # testbed hosts share this machine's clock
                        _, out, _ = hosts.sh(host, f"mv -f {temp} {path} && date +%s.%N")
                        starts.append(float(out.strip()))
                    time.sleep(args.settle)
                    for probe in probes:
                        probe.__exit__()
                    for probe, start in zip(probes, starts, strict=True):
                        settled = probe.settled_after(start, VERSIONS[color])
                        if settled is None:
                            unsettled += 1
                        else:
                            times.append(settled)
                    switches += 1
                result = load.stop()
        finite = sorted(times)
        say(
            f"blue-green switches under load: {switches} switches x {len(urls)} hosts, "
            f"{result.total} requests, {result.failed} failed "
            f"({result.failed / max(result.total, 1):.4%}); served {dict(result.versions)}"
        )
        say(
            "time from the rename of active.yml to 100% of responses from the new color: "
            f"median {statistics.median(finite):.3f}s, "
            f"p90 {finite[int(0.9 * (len(finite) - 1))]:.3f}s, max {finite[-1]:.3f}s "
            f"over {len(finite)} host-switches; {unsettled} not settled within "
            f"{args.settle}s (goal: median <= 0.5 s, 0 failed)"
        )
        if result.failures:
            say(f"first failures: {result.failures[:5]}")
    finally:
        manager.down()


if __name__ == "__main__":
    main()
