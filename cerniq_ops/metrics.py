"""Traffic figures from Traefik's Prometheus metrics: requests, error rate, mean latency over a
window between two scrapes. Parsing and arithmetic are pure; `scrape` reads a host's Traefik.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from pyinfra.api.host import Host

from cerniq_ops import hosts
from cerniq_ops.compose import TRAEFIK_API_PORT
from cerniq_ops.errors import StepFailed

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Prometheus text exposition -> [(sample name, labels, value)], with prometheus-client's
    parser (counters keep their `_total`, histograms give `_sum`/`_count`/`_bucket`);
    ValueError when the text is not an exposition."""
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of NAME's samples whose labels include MATCH; `code="5xx"` matches 500-599."""
    result = 0.0
    for metric, labels, value in samples:
        if metric != name:
            continue
        if all(
            (labels.get(k, "").startswith("5") and len(labels.get(k, "")) == 3)
            if v == "5xx"
            else labels.get(k) == v
            for k, v in match.items()
        ):
            result += value
    return result


@dataclass(frozen=True)
class Window:
    """Traffic between two scrapes."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx answers
    latency_sum: float = 0.0  # seconds spent answering them, in all

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mean_latency(self) -> float | None:
        return self.latency_sum / self.requests if self.requests else None

    def __add__(self, other: Window) -> Window:
        return Window(
            self.requests + other.requests,
            self.errors + other.errors,
            self.latency_sum + other.latency_sum,
        )

    def __sub__(self, other: Window) -> Window:
        return Window(
            self.requests - other.requests,
            self.errors - other.errors,
            self.latency_sum - other.latency_sum,
        )


def by_service(samples: Samples) -> dict[str, Window]:
    """{`cerniq-green@file`: its counters since Traefik started} from its service metrics."""
    found: dict[str, Window] = {}
    for name, labels, value in samples:
        code = labels.get("code", "")
        if name == "traefik_service_requests_total":
            add = Window(value, value if code.startswith("5") else 0.0)
        elif name == "traefik_service_request_duration_seconds_sum":
            add = Window(latency_sum=value)
        else:
            continue
        service = labels.get("service", "")
        found[service] = found.get(service, Window()) + add
    return found


def window(
    before: Samples, after: Samples, *, entrypoint: str = "web", service: str | None = None
) -> Window:
    """Requests, 5xx and latency between BEFORE and AFTER, for an entrypoint or a service."""
    if service:
        prefix, labels = "traefik_service", {"service": service}
    else:
        prefix, labels = "traefik_entrypoint", {"entrypoint": entrypoint}

    def delta(name: str, **extra: str) -> float:
        return max(
            0.0, total(after, name, **labels, **extra) - total(before, name, **labels, **extra)
        )

    return Window(
        requests=delta(f"{prefix}_requests_total"),
        errors=delta(f"{prefix}_requests_total", code="5xx"),
        latency_sum=delta(f"{prefix}_request_duration_seconds_sum"),
    )


def scrape(host: Host) -> Samples:
    """The host's Traefik metrics (served on its API port, loopback only)."""
    _, out, _ = hosts.sh(
        host, ["curl", "-sS", "-m", "5", f"http://127.0.0.1:{TRAEFIK_API_PORT}/metrics"]
    )
    try:
        return parse(out)
    except ValueError as exc:
        raise StepFailed(
            f"{host.name}: Traefik's /metrics is not a Prometheus exposition: {exc}"
        ) from None
