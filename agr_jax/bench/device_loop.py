"""`loop_efficiency.device`: the device-resident input path's loop over its own pure call.

The loop side is training's hot path with `data.placement="device"`: the grain pipeline in
rows-only mode (row numbers + flip/crop draws, `pipeline.ROWS`) -> `DevicePrefetcher` ->
the compiled call that gathers, flips, crops and trains K steps (`train/calls.py`'s
composition: `device_data.gathering`, `multi_step.scan_steps`) -> `loop.py`'s window
(metrics one call late, the non-finite flag every call, scalars about every `log_every`
steps). The pure side is
the same executable on one block of rows already on the device. Windows alternate and the
efficiency is the median of the pair ratios (`alternate.round_ratios`), as in `loop.py`.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax

from agr_jax.bench import loop as loop_bench
from agr_jax.bench.alternate import round_ratios
from agr_jax.bench.step import ModelSpec, StepBench
from agr_jax.data import pipeline
from agr_jax.data.decoded_cache import DecodedSource
from agr_jax.train import device_data, multi_step
from agr_jax.train.nonfinite import NonFiniteGuard
from agr_jax.train.step import make_train_step

DEVICE_PREFETCH = loop_bench.DEVICE_PREFETCH


class DeviceLoopBench:
    """One compiled device-path call of `steps_per_call` steps, with its split on device."""

    def __init__(self, spec: ModelSpec, source: DecodedSource, steps_per_call: int,
                 augment: Mapping[str, Any], seed: int = 0):
        base = StepBench(spec, seed=seed, device_augment=augment)  # model, state, mesh
        self.spec, self.k, self.augment, self.seed = spec, int(steps_per_call), augment, seed
        self.source, self.state, self.dp = source, base.state, base.parallel
        body = device_data.gathering(make_train_step(base.model, base.tx, base.task_spec,
                                                     axis_name=self.dp.axis_name))
        if self.k > 1:
            body = multi_step.scan_steps(body)
        self.traces = 0

        def counted(*args):
            self.traces += 1  # runs only while tracing
            return body(*args)

        self.call = self.dp.train_step(counted, with_split=True, stacked=self.k > 1)
        self.split = device_data.put_split(source, self.dp.mesh)
        self.put = functools.partial(self.dp.put_batch, stacked=self.k > 1)
        it = self.batches()
        self.block = self.put(next(it))  # the pure side's block: real rows and draws
        it.close()

    def batches(self) -> Any:
        """The rows-only training stream, in blocks of K batches (a closable iterator)."""
        ds = pipeline.make_dataset(
            self.source, image_size=self.spec.image_size, batch_size=self.spec.batch,
            train=True, seed=self.seed, augment=self.augment, augment_on="device",
            rows_only=True)
        it = iter(ds)
        if self.k == 1:
            return it
        return multi_step.StackedBatches(it, lambda step: self.k)

    def run(self, block: Any) -> Any:
        self.state, metrics = self.call(self.state, self.split, block)
        return metrics

    def time_window(self, calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            self.run(self.block)
        jax.block_until_ready(self.state)
        return time.perf_counter() - start


def run(bench: DeviceLoopBench, steps: int, windows: int, log_every: int = 50,
        restart_iterator: bool | None = None) -> dict[str, Any]:
    """Loop/pure window pairs of about `steps` steps each (whole calls of K steps).
    `restart_iterator`: close the pipeline before each pure window (default: on CPU)."""
    if restart_iterator is None:
        restart_iterator = jax.default_backend() == "cpu"
    calls = max(1, -(-steps // bench.k))
    bench.run(bench.block)  # compile
    jax.block_until_ready(bench.state)
    guard = NonFiniteGuard(skip=False)
    call_numbers = itertools.count(1)  # runs on across windows, as training's step

    def window(blocks: Any, n: int) -> float:
        # train/loop.py's hot path, one call per "step" (metrics one call late, scalars
        # every `log_every` steps = every log_every / K calls).
        return loop_bench._loop_window(bench, blocks, n, call_numbers, guard,
                                       max(1, log_every // bench.k))[0]

    loop_t, pure_t, _ = loop_bench.alternate_windows(
        bench.batches, bench.put, windows, restart_iterator,
        warm=lambda b: window(b, DEVICE_PREFETCH + 1),  # start-up, what was read ahead
        timed_loop=lambda b: window(b, calls),
        timed_pure=lambda: bench.time_window(calls))
    if bench.traces != 1:
        raise RuntimeError(f"device loop call traced {bench.traces} times; expected 1")
    ratios = round_ratios(pure_t, loop_t)
    images = bench.spec.batch * bench.k * calls
    return {
        "model": bench.spec.key,
        "batch": bench.spec.batch,
        "image_size": bench.spec.image_size,
        "placement": "device",
        "steps_per_call": bench.k,
        "devices": bench.dp.num_devices,
        "timed_steps": calls * bench.k,
        "loop_img_s": images / statistics.median(loop_t),
        "step_img_s": images / statistics.median(pure_t),
        "loop_efficiency": statistics.median(ratios),
        "window_ratios": ratios,
    }
