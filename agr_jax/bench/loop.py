"""Loop efficiency: end-to-end training img/s (real pipeline + loop) over pure step img/s.

The end-to-end side is the training loop's hot path as `train/loop.py` runs it: grain
pipeline -> `DevicePrefetcher` (batches put on device ahead) -> the jitted step -> one step
late, the non-finite flag every step (`NonFiniteGuard`) and every scalar at each
`log_every_steps` step, counted by a step number that runs on across windows as training's
does; no checkpointing, no validation. The pure side is the same compiled step on a
device-resident batch. Windows alternate so both see the same machine load; the efficiency
is the median of the per-pair ratios (`alternate.paired_ratio`).

Each loop window first runs untimed steps that drain everything the pipeline could have
buffered (worker queues, read-ahead, device prefetch), so the timed steps measure the
sustained rate, not batches prepared while nothing was timed. The timed windows are long
against that buffer (`long_window_steps`: at least `LONG_WINDOW_BUFFERS` times it), so even
a buffer refilled during the drain could carry at most a quarter of a window: a pipeline
slower than the step, or one that takes the step's cores, cannot hide behind it. A shorter
`short_steps` lap inside each window is reported beside it (`short`), to show what a short
window alone would read. On CPU the iterator is closed before each pure window (and a fresh
one started for the next loop window), so no pipeline work shares the cores with the pure
step. On GPU/TPU the step does not run on the host's cores, so one iterator serves every
window: restarting it would respawn every grain worker (each importing grain and TFDS) once
per window.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax

from agr_jax.bench import pipeline as pipeline_bench
from agr_jax.bench.alternate import round_ratios
from agr_jax.bench.step import StepBench
from agr_jax.data import pipeline
from agr_jax.train.nonfinite import NonFiniteGuard
from agr_jax.train.prefetch import DevicePrefetcher

T = TypeVar("T")
U = TypeVar("U")
Window = tuple[float, float | None]  # seconds for the whole window, and at the lap (or None)


def _loop_window(bench: StepBench, batches: DevicePrefetcher, steps: int,
                 step_numbers: Iterator[int], guard: NonFiniteGuard, log_every: int,
                 lap_at: int | None = None) -> Window:
    """`steps` loop steps numbered by `step_numbers` (training's global step)."""

    def settle(pending: tuple[int, Any]) -> None:  # one step late, as train/loop.py
        guard.check(*pending)
        if pending[0] % log_every == 0:
            jax.device_get(pending[1])

    start = time.perf_counter()
    lap = pending = None
    for i in range(1, steps + 1):
        metrics = bench.run(next(batches))
        if pending is not None:
            settle(pending)
        pending = (next(step_numbers), metrics)
        if i == lap_at:
            jax.block_until_ready(bench.state)
            lap = time.perf_counter() - start
    settle(pending)
    jax.block_until_ready(bench.state)
    return time.perf_counter() - start, lap


def _pure_window(bench: StepBench, steps: int, lap_at: int | None = None) -> Window:
    """`bench.time_window(steps)`, also timed at step `lap_at` when given."""
    if lap_at is None:
        return bench.time_window(steps), None
    start = time.perf_counter()
    lap = None
    for i in range(1, steps + 1):
        bench.run(bench.batch)
        if i == lap_at:
            jax.block_until_ready(bench.state)
            lap = time.perf_counter() - start
    jax.block_until_ready(bench.state)
    return time.perf_counter() - start, lap


DEVICE_PREFETCH = 2
WORKER_BUFFER = 2  # batches each grain worker prepares ahead
READ_THREADS = 2
LONG_WINDOW_BUFFERS = 4  # timed steps per window, in `buffered_batches`


def alternate_windows(open_batches: Callable[[], Any], put: Callable[[Any], Any],
                      windows: int, restart_iterator: bool,
                      warm: Callable[[DevicePrefetcher], Any],
                      timed_loop: Callable[[DevicePrefetcher], T],
                      timed_pure: Callable[[], U]) -> tuple[list[T], list[U], int]:
    """`windows` loop/pure pairs, the pipeline's iterator closed before each pure window when
    `restart_iterator` (and reopened for the next loop window). Each loop window first runs
    `warm` (untimed: start-up and what was read ahead). Returns the loop results, the pure
    results and how many iterators were started."""
    loop_w: list[T] = []
    pure_w: list[U] = []
    it = batches = None
    started = 0
    try:
        for _ in range(windows):
            if it is None:
                it = open_batches()
                started += 1
                batches = DevicePrefetcher(it, put=put, size=DEVICE_PREFETCH)
            warm(batches)
            loop_w.append(timed_loop(batches))
            if restart_iterator:
                it.close()
                it = batches = None
            pure_w.append(timed_pure())
    finally:
        if it is not None:
            it.close()
    return loop_w, pure_w, started


def buffered_batches(workers: int) -> int:
    """Batches the pipeline can hold ready before the loop asks (drained before timing)."""
    grain_ahead = workers * WORKER_BUFFER if workers else pipeline.read_ahead_batches(READ_THREADS)
    return DEVICE_PREFETCH + grain_ahead + 1


def long_window_steps(workers: int) -> int:
    """Timed steps per window that the pipeline's buffer cannot carry: 4x what it holds."""
    return LONG_WINDOW_BUFFERS * buffered_batches(workers)


def _paired(spec_batch: int, steps: int, pure_t: list[float],
            loop_t: list[float]) -> dict[str, Any]:
    """The efficiency of `steps`-step windows: per-pair ratios, their median, each side's
    median img/s."""
    ratios = round_ratios(pure_t, loop_t)
    loop_img_s = spec_batch * steps / statistics.median(loop_t)
    pure_img_s = spec_batch * steps / statistics.median(pure_t)
    return {
        "timed_steps": steps,
        "loop_img_s": loop_img_s,
        "step_img_s": pure_img_s,
        "loop_efficiency": statistics.median(ratios),  # = alternate.paired_ratio
        "ratio_of_medians": loop_img_s / pure_img_s,
        "window_ratios": ratios,
    }


def run(bench: StepBench, source: Any, steps: int, windows: int, workers: int,
        restart_iterator: bool | None = None, log_every: int = 50,
        short_steps: int | None = None) -> dict[str, Any]:
    """The `loop_efficiency` section; `bench` must be compiled already (same executable).

    The pipeline augments as `pipeline_bench.AUGMENT` says, leaving flip and pad-crop to the
    step when the bench's step does them (`StepBench.device_augment`), on the host otherwise.
    `restart_iterator`: close the pipeline before each pure window (default: on CPU only).
    `log_every`: steps between full metric fetches (training's `log_every_steps`).
    `short_steps`: also time each window at this step (`short`; must be below `steps`).
    """
    if short_steps is not None and not 0 < short_steps < steps:
        raise ValueError(f"short_steps: expected 1..{steps - 1} (below the window's "
                         f"{steps} steps), got {short_steps}")
    spec = bench.spec
    if restart_iterator is None:
        restart_iterator = jax.default_backend() == "cpu"
    augment_on = "host" if bench.device_augment is None else "device"
    ds = pipeline.make_dataset(
        source, image_size=spec.image_size, batch_size=spec.batch, train=True, seed=0,
        augment=pipeline_bench.AUGMENT, worker_count=workers, read_threads=READ_THREADS,
        worker_buffer_size=WORKER_BUFFER, augment_on=augment_on,
    )
    drain = buffered_batches(workers)
    guard = NonFiniteGuard(skip=False)
    step_numbers = itertools.count(1)  # runs on across windows, as training's step
    loop_w, pure_w, iterators = alternate_windows(
        lambda: iter(ds), bench.put, windows, restart_iterator,
        warm=lambda b: _loop_window(bench, b, drain, step_numbers, guard, log_every),
        timed_loop=lambda b: _loop_window(bench, b, steps, step_numbers, guard, log_every,
                                          short_steps),
        timed_pure=lambda: _pure_window(bench, steps, short_steps))
    bench.check_no_recompile()
    out = {
        "model": spec.key,
        "batch": spec.batch,
        "workers": workers,
        "augment": dict(pipeline_bench.AUGMENT),
        "augment_on": augment_on,
        "log_every": log_every,
        "drained_steps": drain,
        "window_over_buffer": steps / drain,
        "iterators_started": iterators,
        **_paired(spec.batch, steps, [t for t, _ in pure_w], [t for t, _ in loop_w]),
    }
    if short_steps is not None:
        out["short"] = _paired(spec.batch, short_steps, [lap for _, lap in pure_w],
                               [lap for _, lap in loop_w])
    return out
