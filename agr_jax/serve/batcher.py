"""A micro-batcher: requests that arrive together share one device call.

Each request `submit`s one item; a worker takes what is queued (up to `max_items`
images, waiting at most `max_wait_s` after the first arrival while the device is idle) and
runs the batch function in its own thread, so under load every call takes all that queued
while the previous one ran: throughput grows with concurrency instead of serialising.
`workers` > 1 lets calls overlap (a photo call is partly host work: decoding, alignment,
which a second worker runs while the first one's detector computes). The predictor pads
each call to a fixed bucket size, so a batch of any size reuses a compiled shape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item]):
    item: Item
    size: int
    future: asyncio.Future
    arrived: float


class MicroBatcher(Generic[Item, Result]):
    """`await batcher.submit(item)` -> that item's result from `run_batch(items)`."""

    def __init__(self, run_batch: Callable[[Sequence[Item]], Sequence[Result]], *,
                 max_items: int = 32, max_wait_s: float = 0.005,
                 size_of: Callable[[Item], int] = lambda item: 1,
                 on_batch: Callable[[int, float], None] | None = None, workers: int = 1):
        if max_items < 1 or max_wait_s < 0 or workers < 1:
            raise ValueError(f"max_items >= 1, max_wait_s >= 0 and workers >= 1, got "
                             f"{max_items}, {max_wait_s}, {workers}")
        self.run_batch, self.max_items, self.max_wait_s = run_batch, max_items, max_wait_s
        self.size_of, self.on_batch, self.workers = size_of, on_batch, workers
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, "agr-batcher")
        self.batches = 0

    def start(self) -> None:
        """Starts the workers in the running event loop (the app's lifespan calls this)."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(self.workers)]
        self._worker = self._tasks[0]

    async def stop(self) -> None:
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks, self._worker = [], None
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("server shutting down"))
        self._queue.clear()

    def stats(self) -> dict[str, Any]:
        return {"max_items": self.max_items, "max_wait_ms": self.max_wait_s * 1e3,
                "workers": self.workers, "batches": self.batches,
                "queued": sum(not p.future.done() for p in self._queue)}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: Item) -> Result:
        if self._worker is None or self._wake is None:
            raise RuntimeError("MicroBatcher.start() was not called in this event loop")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, max(int(self.size_of(item)), 1), future,
                                    time.perf_counter()))
        self._wake.set()
        return await future

    def _take(self) -> list[_Pending]:
        """The oldest requests up to max_items images (at least one request)."""
        taken, total = [], 0
        while self._queue and (not taken or total + self._queue[0].size <= self.max_items):
            pending = self._queue.pop(0)
            if pending.future.done():  # timed out or cancelled while queued
                continue
            taken.append(pending)
            total += pending.size
        return taken

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = self._queue[0].arrived + self.max_wait_s
            while (sum(p.size for p in self._queue) < self.max_items
                   and time.perf_counter() < deadline):
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - time.perf_counter())
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self.run_batch, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for "
                                       f"{len(batch)} items")
            except Exception as error:  # noqa: BLE001 - every waiting request hears of it
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(error)
                continue
            finally:
                self.batches += 1
                if self.on_batch is not None:
                    self.on_batch(sum(p.size for p in batch), time.perf_counter() - start)
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
