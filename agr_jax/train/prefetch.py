"""Device prefetch that stays checkpoint-exact.

Batches are put on device `size` steps ahead of the train step, so the host never makes the
device wait. The iterator position saved in a checkpoint must be that of the last batch the
step *consumed*, not of the last one prefetched, or a resume would skip batches: each queued
batch therefore carries the pipeline state recorded right after it was read.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator
from typing import Any


class DevicePrefetcher:
    """Wraps a grain iterator; `get_state`/`set_state` speak bytes for grain's Orbax handler."""

    def __init__(self, iterator: Any, put: Callable[[Any], Any], size: int = 2):
        self._it = iterator
        self._put = put
        self._size = max(int(size), 1)
        self._queue: collections.deque = collections.deque()
        self._consumed_state = iterator.get_state()

    def __iter__(self) -> Iterator[Any]:
        return self

    def _fill(self) -> None:
        while len(self._queue) < self._size:
            try:
                batch = next(self._it)
            except StopIteration:
                return
            self._queue.append((self._put(batch), self._it.get_state()))

    def __next__(self) -> Any:
        self._fill()
        if not self._queue:
            raise StopIteration
        batch, state = self._queue.popleft()
        self._consumed_state = state
        self._fill()
        return batch

    def get_state(self) -> bytes:
        return json.dumps(self._consumed_state).encode()

    def set_state(self, state: bytes) -> None:
        self._queue.clear()
        self._consumed_state = json.loads(state)
        self._it.set_state(self._consumed_state)

    def start_prefetch(self) -> None:
        """Called by grain's checkpoint handler after a restore; the queue refills lazily."""
