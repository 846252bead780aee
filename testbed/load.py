"""A keep-alive load generator for zero-downtime tests and benchmarks (loopback/testbed only).

Each worker thread reuses one connection (a new connection per request ran the machine out of
ephemeral ports at ~23k requests). It stops by itself after `max_seconds` or `max_requests`.
Each worker pauses `pause` seconds between requests (default 20 ms: ~170 requests/s from 4
workers, one every ~25 ms, so a window of failures far shorter than a health interval is seen):
unpaced, 4 workers sent ~630 requests/s and, with Traefik and the app answering them, took 85%
of two cores during a deploy (45% paced), which is what made the suite CPU-bound.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    versions: Counter = field(default_factory=Counter)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    first_seen: dict[str, float] = field(default_factory=dict)  # version -> first time seen
    failure_kinds: Counter = field(default_factory=Counter)  # what failed, every failure
    failed_from: float | None = None  # time of the first failure
    failed_until: float | None = None  # time of the last failure

    @property
    def total(self) -> int:
        return self.ok + self.failed


class Load:
    """`with Load(urls) as load: ...` then `load.result`. Requests PATH on each base URL."""

    def __init__(
        self,
        urls: list[str],
        path: str = "/version",
        workers: int = 4,
        max_seconds: float = 600,
        max_requests: int = 2_000_000,
        pause: float = 0.02,
    ):
        self.urls = [u.rstrip("/") for u in urls]
        self.path = path
        self.workers = workers
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.pause = pause
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for i in range(self.workers):
            t = threading.Thread(target=self._work, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self.result

    def wait_for_requests(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.result.total < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def _work(self, index: int) -> None:
        session = requests.Session()
        n = index
        while not self._stop.is_set():
            if time.monotonic() - self.started > self.max_seconds:
                break
            if self.result.total >= self.max_requests:
                break
            url = self.urls[n % len(self.urls)] + self.path
            n += 1
            try:
                r = session.get(url, timeout=5)
                good = r.status_code == 200
                what = r.text.strip() if good else f"HTTP {r.status_code} from {url}"
            except requests.RequestException as exc:
                good, what = False, f"{type(exc).__name__} from {url}"
            now = time.monotonic()
            with self._lock:
                if good:
                    self.result.ok += 1
                    self.result.versions[what] += 1
                    self.result.first_seen.setdefault(what, now)
                else:
                    self.result.failed += 1
                    self.result.failure_kinds[what] += 1
                    if self.result.failed_from is None:
                        self.result.failed_from = now
                    self.result.failed_until = now
                    if len(self.result.failures) < 200:
                        self.result.failures.append((now, what))
            if self.pause:
                time.sleep(self.pause)
