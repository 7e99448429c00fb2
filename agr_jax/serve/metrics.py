"""The service's Prometheus metrics (`prometheus_client`), one registry per app:

    agr_requests_total{status}          requests answered, by HTTP status
    agr_rejected_total{lane,reason}     requests refused before any work (queue full: 503)
    agr_faces_total                     face records returned
    agr_request_seconds                 latency histogram of /v1/predict
    agr_batch_images{lane}              images per device call (the micro-batchers' batches)
    agr_batch_seconds{lane}             time per device call
    agr_lane_pending{lane}              requests admitted and not yet answered, per lane
    agr_xla_compiles_total              XLA programs built (or loaded from the persistent
                                        cache) in this process, since start-up
    agr_xla_compiles_after_ready        of those, built after /healthz said ready (0 is the goal)
    agr_traces{component}               the detectors' and the predictor's own trace counters

The compile count listens to JAX's own monitoring event for every backend compile, so it
counts what any code path compiles, not only what a component chooses to report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import jax
import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch's name


class _CompileCount:
    """Every XLA compile of this process (a `jax.monitoring` listener, registered once)."""

    def __init__(self):
        self._lock, self.count, self._listening = threading.Lock(), 0, False

    def _on_event(self, event: str, duration: float, **kwargs) -> None:
        if event == COMPILE_EVENT:
            with self._lock:
                self.count += 1

    def listen(self) -> None:
        with self._lock:
            if not self._listening:
                jax.monitoring.register_event_duration_secs_listener(self._on_event)
                self._listening = True


COMPILES = _CompileCount()


class _Live(Collector):
    """Values read at scrape time: compile counts and per-component trace counters."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        m = self.metrics
        total = GaugeMetricFamily("agr_xla_compiles_total",
                                  "XLA programs compiled in this process since start-up.")
        total.add_metric([], COMPILES.count)
        after = GaugeMetricFamily("agr_xla_compiles_after_ready",
                                  "XLA programs compiled after the service reported ready.")
        after.add_metric([], m.compiles_after_ready())
        traces = GaugeMetricFamily("agr_traces", "Trace/compile counters the components keep.",
                                   labels=["component"])
        for name, read in sorted(m.trace_counters.items()):
            value = read()
            if value is not None:
                traces.add_metric([name], value)
        yield from (total, after, traces)


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self):
        COMPILES.listen()
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("agr_requests", "Requests to /v1/predict, by HTTP status.",
                                     ["status"], registry=r)
        self.rejected = prom.Counter("agr_rejected", "Requests refused before any work.",
                                     ["lane", "reason"], registry=r)
        self.faces = prom.Counter("agr_faces", "Face records returned.", registry=r)
        self.latency = prom.Histogram("agr_request_seconds", "Latency of /v1/predict.",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.batch_images = prom.Histogram("agr_batch_images", "Images per device call.",
                                           ["lane"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = prom.Histogram("agr_batch_seconds", "Seconds per device call.",
                                            ["lane"], buckets=LATENCY_BUCKETS, registry=r)
        self.pending = prom.Gauge("agr_lane_pending", "Requests admitted, not yet answered.",
                                  ["lane"], registry=r)
        self.trace_counters: dict[str, Callable[[], int | None]] = {}
        self.compiles_at_ready: int | None = None
        r.register(_Live(self))

    def mark_ready(self) -> None:
        self.compiles_at_ready = COMPILES.count

    def compiles_after_ready(self) -> int:
        return 0 if self.compiles_at_ready is None else COMPILES.count - self.compiles_at_ready

    def request(self, status: int, seconds: float, faces: int = 0) -> None:
        self.requests.labels(str(status)).inc()
        self.faces.inc(faces)
        self.latency.observe(seconds)

    def batch(self, lane: str, images: int, seconds: float) -> None:
        self.batch_images.labels(lane).observe(images)
        self.batch_seconds.labels(lane).observe(seconds)

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's current value (tests, /healthz)."""
        return self.registry.get_sample_value(name, labels)

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
