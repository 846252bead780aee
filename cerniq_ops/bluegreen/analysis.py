"""The new color's traffic judged by the seed's rollback thresholds (9.1): Traefik's counters
summed over the app hosts, the verdict on a window, and the watch of a color (the post-switch
analysis, a canary's pause between its steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cerniq_ops import metrics, traefik
from cerniq_ops.bluegreen.colors import _pairs, traefik_service
from cerniq_ops.bluegreen.routing import _service_doc
from cerniq_ops.errors import StepFailed
from cerniq_ops.procedure import Context

Traffic = metrics.Window  # requests, 5xx errors, seconds spent: Traefik's counters


# -- pure: the verdict on a window ----------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def analyse(
    new: Traffic,
    old: Traffic | None,
    *,
    max_error_rate: float,
    latency_factor: float,
    latency_floor: float,
    min_requests: int,
) -> Verdict:
    """The seed's rollback thresholds (9.1) on the new color's traffic in a window.

    Fails when the error rate is above MAX_ERROR_RATE, or the mean latency is above
    LATENCY_FACTOR x the old color's (and above LATENCY_FLOOR seconds, below which a ratio of
    sub-millisecond means is noise). Fewer than MIN_REQUESTS requests cannot fail it.
    """
    if new.requests < min_requests:
        return Verdict(True, f"{new.requests:.0f} request(s): too few to judge (< {min_requests})")
    rate = new.error_rate
    parts = [f"{new.requests:.0f} requests, {rate:.1%} errors"]
    if rate > max_error_rate:
        return Verdict(False, f"{parts[0]} (limit {max_error_rate:.0%})")
    latency, baseline = new.mean_latency or 0.0, old.mean_latency if old else None
    parts.append(f"mean {latency * 1000:.1f} ms")
    if baseline:
        parts.append(f"old {baseline * 1000:.1f} ms")
        if latency > latency_factor * baseline and latency > latency_floor:
            return Verdict(False, f"{', '.join(parts)}: above {latency_factor:g}x the old color")
    return Verdict(True, ", ".join(parts))


# -- reading hosts: Traefik's counters, the watch of a color --------------------------------------
def traffic_on(host) -> dict[str, Traffic]:
    return metrics.by_service(metrics.scrape(host))


def _file_key(color: str) -> str:
    return f"{traefik_service(color)}@file"


def total_traffic(ctx: Context) -> dict[str, Traffic]:
    """Service traffic summed over every app host's Traefik."""
    summed: dict[str, Traffic] = {}
    for host in ctx.app_hosts:
        for name, t in traffic_on(host).items():
            summed[name] = summed.get(name, Traffic()) + t
    return summed


def watch(
    ctx: Context,
    color: str,
    before: dict[str, Traffic],
    baseline: Callable[[dict[str, Traffic]], Traffic | None],
    seconds: float,
) -> Verdict:
    """Check COLOR every second for SECONDS: health through each host's entrypoint and the
    thresholds on its traffic since BEFORE. StepFailed at the first failed check."""
    s = ctx.settings
    deadline = time.monotonic() + seconds
    verdict = Verdict(True, "no check yet")
    while True:
        for spec, host in _pairs(ctx):
            up = traefik.up_servers(_service_doc(host, traefik_service(color)))
            if not up:
                raise StepFailed(f"{color} is DOWN in Traefik on {spec.name}")
        now = total_traffic(ctx)
        key = _file_key(color)
        verdict = analyse(
            now.get(key, Traffic()) - before.get(key, Traffic()),
            baseline(now),
            max_error_rate=s.rollback_error_rate,
            latency_factor=s.rollback_latency_factor,
            latency_floor=s.bluegreen_latency_floor,
            min_requests=s.bluegreen_min_requests,
        )
        if not verdict.ok:
            raise StepFailed(f"analysis of {color} failed: {verdict.detail}")
        if time.monotonic() >= deadline:
            return verdict
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _delta(now: dict[str, Traffic], before: dict[str, Traffic], color: str) -> Traffic:
    key = _file_key(color)
    return now.get(key, Traffic()) - before.get(key, Traffic())
