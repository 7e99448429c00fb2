"""Loop efficiency: end-to-end training img/s (real pipeline + loop) over pure step img/s.

The end-to-end side is the training loop's hot path as `train/loop.py` runs it: grain
pipeline -> `DevicePrefetcher` (batches put on device ahead) -> the jitted step -> one step
late, the non-finite flag every step (`NonFiniteGuard`) and every scalar at each
`log_every_steps` step; no checkpointing, no validation. The pure side is the same compiled
step on a device-resident batch. Windows alternate so both see the same machine load; the
efficiency is the median of the per-pair ratios (`alternate.paired_ratio`).

Each loop window first runs untimed steps that drain everything the pipeline could have
buffered (worker queues, read-ahead, device prefetch), so the timed steps measure the
sustained rate, not batches prepared while nothing was timed. On CPU the iterator is closed
before each pure window (and a fresh one started for the next loop window), so no pipeline
work shares the cores with the pure step. On GPU/TPU the step does not run on the host's
cores, so one iterator serves every window: restarting it would respawn every grain worker
(each importing grain and TFDS) once per window.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax

from agr_jax.bench import pipeline as pipeline_bench
from agr_jax.bench.alternate import round_ratios
from agr_jax.bench.step import StepBench
from agr_jax.data import pipeline
from agr_jax.train.nonfinite import NonFiniteGuard
from agr_jax.train.prefetch import DevicePrefetcher


def _loop_window(bench: StepBench, batches: DevicePrefetcher, steps: int,
                 log_every: int) -> float:
    guard = NonFiniteGuard(skip=False)
    start = time.perf_counter()
    pending = None
    for step in range(1, steps + 1):
        metrics = bench.run(next(batches))
        if pending is not None:  # one step late, as train/loop.py
            guard.check(*pending)
            if pending[0] % log_every == 0:
                jax.device_get(pending[1])
        pending = (step, metrics)
    jax.block_until_ready(bench.state)
    jax.device_get(pending[1])
    return time.perf_counter() - start


DEVICE_PREFETCH = 2
WORKER_BUFFER = 2  # batches each grain worker prepares ahead
READ_THREADS = 2


def buffered_batches(workers: int) -> int:
    """Batches the pipeline can hold ready before the loop asks (drained before timing)."""
    grain_ahead = workers * WORKER_BUFFER if workers else pipeline.read_ahead_batches(READ_THREADS)
    return DEVICE_PREFETCH + grain_ahead + 1


def run(bench: StepBench, source: Any, steps: int, windows: int, workers: int,
        restart_iterator: bool | None = None, log_every: int = 50) -> dict[str, Any]:
    """The `loop_efficiency` section; `bench` must be compiled already (same executable).

    The pipeline augments as `pipeline_bench.AUGMENT` says, leaving flip and pad-crop to the
    step when the bench's step does them (`StepBench.device_augment`), on the host otherwise.
    `restart_iterator`: close the pipeline before each pure window (default: on CPU only).
    `log_every`: steps between full metric fetches (training's `log_every_steps`).
    """
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
    loop_t, pure_t = [], []
    it = batches = None
    iterators = 0
    for _ in range(windows):
        if it is None:
            it = iter(ds)
            iterators += 1
            batches = DevicePrefetcher(it, put=bench.put, size=DEVICE_PREFETCH)
        _loop_window(bench, batches, drain, log_every)  # start-up + what was prepared ahead
        loop_t.append(_loop_window(bench, batches, steps, log_every))
        if restart_iterator:
            it.close()
            it = batches = None
        pure_t.append(bench.time_window(steps))
    if it is not None:
        it.close()
    del batches, it
    bench.check_no_recompile()
    ratios = round_ratios(pure_t, loop_t)
    loop_img_s = spec.batch * steps / statistics.median(loop_t)
    pure_img_s = spec.batch * steps / statistics.median(pure_t)
    return {
        "model": spec.key,
        "batch": spec.batch,
        "workers": workers,
        "augment": dict(pipeline_bench.AUGMENT),
        "augment_on": augment_on,
        "log_every": log_every,
        "timed_steps": steps,
        "drained_steps": drain,
        "iterators_started": iterators,
        "loop_img_s": loop_img_s,
        "step_img_s": pure_img_s,
        "loop_efficiency": statistics.median(ratios),  # = alternate.paired_ratio
        "ratio_of_medians": loop_img_s / pure_img_s,
        "window_ratios": ratios,
    }
