"""Lanes: each kind of work (aligned crops; photos for one detector) has its own decode
threads, its own micro-batcher with its own call threads, and its own bound on the
requests it holds, so a crop is never queued behind a phone photo and a burst of photos
is refused (503 with Retry-After) instead of growing a queue that can only time out.

Admission is cost-aware: besides the count bound (`max_pending`), a request is refused at
once when the work already admitted would, at the lane's measured call time, keep it
waiting past the request timeout: under overload the server answers 503 in milliseconds
and spends its cores on requests that can still be answered in time, instead of computing
answers nobody waits for any more (a timed-out request still queued is dropped unrun).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from agr_jax.serve.batcher import MicroBatcher

T = TypeVar("T")


class Busy(Exception):
    """The lane holds as many requests as it may; `retry_after` in whole seconds."""

    def __init__(self, lane: str, pending: int, retry_after: int):
        super().__init__(f"the {lane!r} lane is busy ({pending} requests in progress, more "
                         f"than it can answer in time); retry in {retry_after} s")
        self.lane, self.retry_after = lane, retry_after


class Lane:
    """Admission (`admit`), decoding (`decode`) and batched device calls (`submit`)."""

    def __init__(self, name: str, run_batch: Callable[[Sequence[Any]], Sequence[Any]], *,
                 max_batch: int, max_wait_s: float, max_pending: int, decode_threads: int,
                 timeout_s: float = float("inf"), workers: int = 1,
                 on_batch: Callable[[str, int, float], None] | None = None):
        if max_pending < 1 or decode_threads < 1:
            raise ValueError(f"lane {name}: max_pending and decode_threads must be >= 1, got "
                             f"{max_pending}, {decode_threads}")
        self.name, self.max_pending, self.pending = name, max_pending, 0
        self.timeout_s = timeout_s
        self.batch_seconds = 0.0  # moving average of one device call, for Retry-After
        self._on_batch = on_batch
        self._limiter = CapacityLimiter(decode_threads)
        self.batcher: MicroBatcher = MicroBatcher(run_batch, max_items=max_batch,
                                                  max_wait_s=max_wait_s, on_batch=self._batch,
                                                  workers=workers)

    def _batch(self, images: int, seconds: float) -> None:
        self.batch_seconds = seconds if not self.batch_seconds else (
            0.8 * self.batch_seconds + 0.2 * seconds)
        if self._on_batch is not None:
            self._on_batch(self.name, images, seconds)

    def expected_wait(self, requests: int) -> float:
        """Seconds until `requests` more are answered, at the lane's recent call time."""
        per_round = self.batcher.max_items * self.batcher.workers
        return math.ceil(requests / per_round) * self.batch_seconds

    def retry_after(self) -> int:
        """Seconds until the work held now has probably drained (1 to 60)."""
        return int(min(60, max(1, math.ceil(self.expected_wait(self.pending)))))

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Holds one of `max_pending` places for the request's whole life, or raises Busy
        (also when, behind the work ahead, it would outlast the request's timeout; an idle
        lane always admits, so a slow call measured once cannot close it)."""
        if self.pending >= self.max_pending or (
                self.pending and self.expected_wait(self.pending + 1) > self.timeout_s):
            raise Busy(self.name, self.pending, self.retry_after())
        self.pending += 1  # the event loop's thread only: no lock needed
        try:
            yield
        finally:
            self.pending -= 1

    async def decode(self, fn: Callable[[], T]) -> T:
        """`fn()` on one of this lane's decode threads (other lanes never wait for them)."""
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def submit(self, item: Any) -> Any:
        return await self.batcher.submit(item)

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.batcher.close()

    def stats(self) -> dict[str, Any]:
        return {**self.batcher.stats(), "pending": self.pending,
                "max_pending": self.max_pending,
                "batch_ms": round(self.batch_seconds * 1e3, 1)}
