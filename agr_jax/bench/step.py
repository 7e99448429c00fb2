"""Pure training-step throughput: the project's jitted step on one device-resident batch.

The step is the real one (`make_train_step`, donated state, Adam + clipping), wrapped as the
trainer wraps it: `DataParallel` shard_map over every local device when there are several
(e.g. `--cpu_devices 2`: one XLA device per core), plain jit on one. The batch is random
and stays on device, so only the step is timed. Compile time is the first call minus one
steady step. A trace counter turns any recompilation after step 1 into an error.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from agr_jax import models, tasks
from agr_jax.bench import xla_flops
from agr_jax.data import pipeline
from agr_jax.models.flops import forward_flops
from agr_jax.train.optim import make_optimizer
from agr_jax.train.parallel import DataParallel
from agr_jax.train.state import count_params, create_train_state
from agr_jax.train.step import make_train_step

OPTIMIZER = {"name": "adam", "learning_rate": 1e-3, "schedule": "constant", "grad_clip": 1.0}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One benchmarked configuration: registry name, input side, batch, dtype, model options."""

    name: str
    image_size: int
    batch: int
    dtype: str = "float32"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    # CPU XLA devices to time it on, as training with config.cpu_devices (0: one device);
    # `--cpu_devices` overrides it. Takes effect where each section has its own process.
    cpu_devices: int = 0
    tag: str = ""  # tells apart specs of one model and dtype (e.g. "c64": channel_multiple)

    @property
    def key(self) -> str:
        key = self.name if self.dtype == "float32" else f"{self.name}_{self.dtype}"
        return f"{key}_{self.tag}" if self.tag else key


class RecompiledError(RuntimeError):
    pass


def random_batch(batch: int, image_size: int, seed: int = 0,
                 device_augment: Mapping | None = None) -> dict[str, np.ndarray]:
    """A batch with the pipeline's keys, shapes and dtypes (so the same executable serves
    both); with `device_augment`, also the flip and crop draws the step applies (as the
    pipeline sends them with `augment_on` "device")."""
    rng = np.random.default_rng(seed)
    out = {
        "image": rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
        "age": rng.uniform(1, 100, batch).astype(np.float32),
        "gender": rng.integers(0, 2, batch).astype(np.int32),
        "race": rng.integers(0, 5, batch).astype(np.int32),
    }
    if device_augment is not None:
        draws = pipeline.augment_draws(seed, np.arange(batch))
        out[pipeline.FLIP_CROP] = pipeline.flip_crop_params(draws, device_augment)
    return out


class StepBench:
    """Builds model + state + jitted step once; `time_window(n)` runs n steps and blocks.

    `device_augment`: the augmentation the step applies itself (`random_batch`), for
    timing the same executable as a pipeline with `augment_on` "device" feeds.
    """

    def __init__(self, spec: ModelSpec, seed: int = 0, device_augment: Mapping | None = None):
        self.spec = spec
        self.device_augment = device_augment
        self.task_spec = tasks.TaskSpec()
        self.parallel = DataParallel.create("shard_map" if jax.local_device_count() > 1
                                            else "none")
        self.parallel.check_batch_size(spec.batch, "batch (benchmark)")
        self.model = models.build(
            spec.name, outputs=self.task_spec.output_sizes(), dtype=spec.dtype,
            bn_axis_name=self.parallel.axis_name, **spec.kwargs
        )
        self.tx = make_optimizer(OPTIMIZER, total_steps=1)
        shape = (spec.image_size, spec.image_size, 3)
        self.state = self.parallel.replicate(create_train_state(self.model, self.tx, shape, seed))
        self.num_params = count_params(self.state.params)
        # Training = forward + backward (grads wrt activations and weights) = 3 x forward.
        self.flops_per_img = 3 * forward_flops(self.model, spec.image_size)
        self.traces = 0
        body = make_train_step(self.model, self.tx, self.task_spec,
                               axis_name=self.parallel.axis_name)

        def counted(state, batch):
            self.traces += 1  # runs only while tracing
            return body(state, batch)

        self.step = self.parallel.train_step(counted)
        self.batch = self.put(random_batch(spec.batch, spec.image_size, seed, device_augment))
        self.compile_s: float | None = None
        self.last_metrics: Any = None

    @property
    def num_devices(self) -> int:
        return self.parallel.num_devices

    def put(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """A host batch onto the step's devices, sharded as the trainer shards it."""
        return self.parallel.put_batch(batch)

    def run(self, batch: Any) -> Any:
        self.state, self.last_metrics = self.step(self.state, batch)
        return self.last_metrics

    def first_call(self) -> float:
        start = time.perf_counter()
        jax.block_until_ready(self.run(self.batch))
        return time.perf_counter() - start

    def time_window(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.run(self.batch)
        jax.block_until_ready(self.state)
        return time.perf_counter() - start

    def xla_flop_check(self) -> dict[str, Any]:
        """XLA's FLOP count of this step beside the analytic one (`bench/xla_flops.py`).
        Lowering again re-runs the trace counter's Python, not a compile: not counted."""
        traces = self.traces
        flops = xla_flops.compiled_flops(self.step, self.state, self.batch)
        self.traces = traces
        return xla_flops.cross_check(flops, self.flops_per_img,
                                     self.spec.batch // self.num_devices)

    def check_no_recompile(self) -> None:
        if self.traces != 1:
            raise RecompiledError(
                f"step for {self.spec.key} was traced {self.traces} times; expected 1 "
                "(shapes/dtypes of state or batch changed after step 1)"
            )


def window_steps(min_steps: int, step_s: float, window_s: float) -> int:
    """Steps per timed window: at least `min_steps`, and enough to last `window_s` seconds.

    Windows of a fixed 3 steps last ~0.27 s for RoR on the 2-core host, where consecutive
    windows of the same step read up to 10-30 % apart (2026-12-03); longer windows average
    more of that noise out.
    """
    if window_s <= 0 or step_s <= 0:
        return min_steps
    return max(min_steps, math.ceil(window_s / step_s))


def measure(bench: StepBench, steps: int, windows: int, peak_tflops: float,
            window_s: float = 0.0) -> dict[str, Any]:
    """Median over `windows` timed windows, after compile, one warm-up window of `steps`
    steps and one more that sizes the timed windows (`window_steps`).

    A whole untimed window, not one step: the heap grows to its steady size over the first
    steps (host_memory.py), and with one warm-up step the first timed window of RoR on two
    CPU devices read 496 img/s against 746-757 for the next two (2026-12-02). Sized from
    the warm-up window itself, RoR's windows got 5-6 steps (~0.5 s) instead of a second's.
    """
    first = bench.first_call()
    bench.time_window(steps)
    steps = window_steps(steps, bench.time_window(steps) / steps, window_s)
    times = [bench.time_window(steps) for _ in range(windows)]
    bench.check_no_recompile()
    flop_check = bench.xla_flop_check()
    sec = statistics.median(times) / steps
    img_s = bench.spec.batch / sec
    achieved = img_s * bench.flops_per_img / 1e12
    return {
        "img_s": img_s,
        "ms_per_step": sec * 1e3,
        "compile_s": max(first - sec, 0.0),
        "flops_per_img": bench.flops_per_img,
        "achieved_tflops": achieved,
        "utilisation": achieved / peak_tflops if peak_tflops > 0 else None,
        "batch": bench.spec.batch,
        "image_size": bench.spec.image_size,
        "dtype": bench.spec.dtype,
        "devices": bench.num_devices,
        "params": bench.num_params,
        "model_kwargs": dict(bench.spec.kwargs),
        "window_steps": steps,
        "window_img_s": [bench.spec.batch * steps / t for t in times],
        "traces": bench.traces,
        **flop_check,
    }
