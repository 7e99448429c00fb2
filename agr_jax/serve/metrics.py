"""Prometheus text exposition (format 0.0.4), hand-written: counters and histograms only.

    agr_requests_total{status}          requests answered, by HTTP status
    agr_faces_total                     face records returned
    agr_request_seconds                 latency histogram of /v1/predict
    agr_batch_images                    images per device call (the micro-batcher's batches)
    agr_batch_seconds                   time per device call
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help_text, tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last: +Inf
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += count
            out.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        return out + [f"{self.name}_sum {self.sum:.6f}", f"{self.name}_count {self.count}"]


class Metrics:
    """Thread-safe: the batcher's worker thread and the event loop both record."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter[int] = Counter()
        self.faces = 0
        self.latency = Histogram("agr_request_seconds", "Latency of /v1/predict.",
                                 LATENCY_BUCKETS)
        self.batch_images = Histogram("agr_batch_images", "Images per device call.",
                                      BATCH_BUCKETS)
        self.batch_seconds = Histogram("agr_batch_seconds", "Seconds per device call.",
                                       LATENCY_BUCKETS)

    def request(self, status: int, seconds: float, faces: int = 0) -> None:
        with self._lock:
            self.requests[status] += 1
            self.faces += faces
            self.latency.observe(seconds)

    def batch(self, images: int, seconds: float) -> None:
        with self._lock:
            self.batch_images.observe(images)
            self.batch_seconds.observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP agr_requests_total Requests to /v1/predict, by HTTP status.",
                     "# TYPE agr_requests_total counter"]
            lines += [f'agr_requests_total{{status="{s}"}} {n}'
                      for s, n in sorted(self.requests.items())]
            lines += ["# HELP agr_faces_total Face records returned.",
                      "# TYPE agr_faces_total counter", f"agr_faces_total {self.faces}"]
            for histogram in (self.latency, self.batch_images, self.batch_seconds):
                lines += histogram.lines()
        return "\n".join(lines) + "\n"
