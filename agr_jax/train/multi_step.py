"""Several train steps per dispatch (`config.steps_per_call = K`): a `lax.scan` over K batches.

A jitted call costs the host a dispatch and the device a gap between programs; with the
split on the device (`device_data.py`) and a fast step, that gap is what is left between
the loop and the pure step. K steps in one program leave one dispatch per K steps. The
step body is the same, so K steps in one call give the parameters K single calls give.

Calls end where the loop must act on the host: epoch ends (validation), checkpoint steps
and the last step; a call that would cross one is cut short there (`call_sizes`), so
checkpoints, validation and logging happen at call boundaries and each distinct call
length compiles once.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Metrics kept as the worst of the K steps rather than their mean.
WORST_OF = ("nonfinite",)


def scan_steps(body: Callable) -> Callable:
    """`body(state, *fixed, batch) -> (state, metrics)` -> the same over a [K, ...] batch
    block, metrics averaged over the K steps (`nonfinite`: 1 if any step was)."""

    def steps(state: Any, *args: Any):
        *fixed, batches = args
        state, metrics = jax.lax.scan(lambda s, b: body(s, *fixed, b), state, batches)
        return state, {k: jnp.max(v) if k in WORST_OF else jnp.mean(v, axis=0)
                       for k, v in metrics.items()}

    return steps


def call_size(step: int, steps_per_call: int, boundaries: tuple[int, ...],
              total_steps: int) -> int:
    """Steps of the call starting after `step`: `steps_per_call`, cut at the next multiple
    of any of `boundaries` (epoch length, checkpoint interval) and at `total_steps`."""
    stop = min([total_steps] + [(step // b + 1) * b for b in boundaries if b > 0])
    return max(1, min(int(steps_per_call), stop - step))


class StackedBatches:
    """A batch iterator regrouped into [n, ...] blocks of `size_at(step)` batches.

    `get_state`/`set_state` pass through (the state after the last batch of the block), so
    a checkpoint at a call boundary resumes exactly; `step` follows the batches taken.
    """

    def __init__(self, iterator: Any, size_at: Callable[[int], int], step: int = 0):
        self._it, self._size_at, self.step = iterator, size_at, int(step)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        n = self._size_at(self.step)
        block = collections.defaultdict(list)
        for _ in range(n):
            for key, value in next(self._it).items():
                block[key].append(value)
        self.step += n
        return {key: np.stack(values) for key, values in block.items()}

    def get_state(self) -> Any:
        return self._it.get_state()

    def set_state(self, state: Any) -> None:
        self._it.set_state(state)

    def close(self) -> None:
        if hasattr(self._it, "close"):
            self._it.close()

    def seek_step(self, step: int) -> None:
        """After a restore: the step the next block starts after."""
        self.step = int(step)
