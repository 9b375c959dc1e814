"""Request counts and latency percentiles of ``hashsdk serve``, as JSON and as Prometheus text.

Latencies are kept per route in a ring of the last ``WINDOW`` requests, so the percentiles
describe recent traffic in bounded memory (Prometheus users compute their own from the
``_sum`` and ``_count`` totals, which cover every request).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

WINDOW = 10_000
PERCENTILES = (50, 90, 99)


class Stats:
    """Thread-safe counters: ``record(route, status, seconds)`` once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.counts: Counter[tuple[str, int]] = Counter()
        self.seconds: Counter[str] = Counter()
        self.latency: dict[str, deque[float]] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts[(route, status)] += 1
            self.seconds[route] += seconds
            self.latency.setdefault(route, deque(maxlen=WINDOW)).append(seconds)

    def routes(self) -> dict[str, dict]:
        """Per route: requests by status, and latency percentiles in milliseconds."""
        with self._lock:
            counts, latency = dict(self.counts), {r: list(v) for r, v in self.latency.items()}
        out: dict[str, dict] = {}
        for (route, status), n in sorted(counts.items()):
            entry = out.setdefault(route, {"requests": 0, "by_status": {}})
            entry["requests"] += n
            entry["by_status"][str(status)] = n
        for route, values in latency.items():
            ms = np.percentile(np.asarray(values) * 1e3, PERCENTILES)
            out[route]["latency_ms"] = {f"p{p}": round(float(v), 3)
                                        for p, v in zip(PERCENTILES, ms, strict=True)}
        return out

    def prometheus(self, gauges: dict[str, float]) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = []
        for name, value in gauges.items():
            lines += [f"# TYPE hashsdk_{name} gauge", f"hashsdk_{name} {value}"]
        with self._lock:
            counts, seconds = dict(self.counts), dict(self.seconds)
        lines.append("# TYPE hashsdk_requests_total counter")
        lines += [f'hashsdk_requests_total{{route="{r}",status="{s}"}} {n}'
                  for (r, s), n in sorted(counts.items())]
        lines.append("# TYPE hashsdk_request_seconds_sum counter")
        lines += [f'hashsdk_request_seconds_sum{{route="{r}"}} {v:.6f}'
                  for r, v in sorted(seconds.items())]
        return "\n".join(lines) + "\n"
