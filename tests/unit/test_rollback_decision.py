"""The seed's rollback decision matrix (9.1) and the metrics it reads, without hosts."""

import pytest

from cerniq_ops import metrics
from cerniq_ops.rollback import decide

pytestmark = pytest.mark.unit


def exposition(ok: int, errors: int, ok_seconds: float, error_seconds: float, other: int) -> str:
    """Traefik's exposition format: per-code counters of the web entrypoint (and another)."""

    def line(metric: str, code: int, value: float, entrypoint: str = "web") -> str:
        labels = f'code="{code}",entrypoint="{entrypoint}",method="GET",protocol="http"'
        return f"traefik_entrypoint_{metric}{{{labels}}} {value}"

    return "\n".join(
        [
            "# HELP traefik_entrypoint_requests_total How many HTTP requests processed.",
            line("requests_total", 200, ok),
            line("requests_total", 503, errors),
            line("request_duration_seconds_sum", 200, ok_seconds),
            line("request_duration_seconds_sum", 503, error_seconds),
            line("requests_total", 200, other, entrypoint="traefik"),
        ]
    )


BEFORE = exposition(100, 1, 1.0, 0.1, 7)
AFTER = exposition(280, 21, 2.8, 0.3, 9)


def test_window_between_two_scrapes():
    w = metrics.window(metrics.parse(BEFORE), metrics.parse(AFTER))
    assert (w.requests, w.errors) == (200, 20)
    assert w.error_rate == pytest.approx(0.10)
    assert w.mean_latency == pytest.approx(2.0 / 200)


def test_label_values_with_escapes_parse():
    (sample,) = metrics.parse('m{a="x\\"y",b="z"} 3')
    assert sample == ("m", {"a": 'x"y', "b": "z"}, 3.0)  # unescaped, as Prometheus reads it


def test_text_that_is_not_an_exposition_is_refused():
    with pytest.raises(ValueError, match="invalid metric name"):
        metrics.parse("<html>oops")


def w(requests, errors, mean_ms):
    return metrics.Window(requests, errors, requests * mean_ms / 1000)


@pytest.mark.parametrize(
    ("healthy", "window", "baseline", "category", "rule"),
    [
        (False, w(100, 0, 5), 5.0, "immediate", "service completely down"),
        (True, w(100, 6, 5), 5.0, "considered", "error rate 6.0% > 5%"),
        (True, w(100, 0, 16), 5.0, "considered", "response time 3.2x baseline > 3x"),
        (True, w(100, 2, 5), 5.0, "optional", "minor errors (2 5xx)"),
        (True, w(100, 0, 6), 5.0, "optional", "performance degradation 20% (< 50%)"),
        (True, w(100, 0, 5), 5.0, "none", "no rollback trigger fired"),
        (True, w(100, 0, 50), None, "none", "no rollback trigger fired"),  # no baseline known
        (True, w(0, 0, 0), 5.0, "none", "no rollback trigger fired"),
    ],
)
def test_decision_matrix(healthy, window, baseline, category, rule):
    decision = decide(
        healthy=healthy,
        window=window,
        baseline_ms=baseline,
        error_rate_limit=0.05,
        latency_factor=3.0,
    )
    assert decision.category == category
    assert decision.rule.startswith(rule)


def test_latency_below_the_floor_is_noise_not_a_trigger():
    decision = decide(
        healthy=True,
        window=w(100, 0, 4),
        baseline_ms=1.0,
        error_rate_limit=0.05,
        latency_factor=3.0,
        latency_floor_ms=50,
    )
    assert decision.category == "none"
    slow = decide(
        healthy=True,
        window=w(100, 0, 400),
        baseline_ms=100.0,
        error_rate_limit=0.05,
        latency_factor=3.0,
        latency_floor_ms=50,
    )
    assert slow.category == "considered"
