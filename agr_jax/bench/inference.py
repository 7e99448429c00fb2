"""Batched inference throughput: JPEG bytes -> decoded uint8 batch -> jit predict -> labels.

Host decoding of batch i+1 overlaps the device's work on batch i (labels fetched one batch late).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from agr_jax import tasks
from agr_jax.bench.step import StepBench
from agr_jax.data import pipeline


def run(bench: StepBench, jpegs: list[bytes], batch: int, rounds: int = 2) -> dict[str, Any]:
    """The `inference` section, using `bench`'s model and (trained-for-a-few-steps) state."""
    spec, model, task_spec = bench.spec, bench.model, bench.task_spec
    traces = 0

    def predict(variables, images):
        nonlocal traces
        traces += 1
        outputs, _ = model.apply(variables, images, train=False)
        preds = tasks.predictions(outputs, task_spec)
        return {k: preds[k] for k in ("age", "gender", "race")}

    predict = jax.jit(predict)
    # One device (the first): serving-style batched prediction, whatever the step's mesh.
    variables = jax.device_put(
        jax.device_get({"params": bench.state.params, "batch_stats": bench.state.batch_stats}),
        jax.local_devices()[0],
    )
    n = (len(jpegs) // batch) * batch
    if n == 0:
        raise ValueError(f"inference: need at least {batch} images, got {len(jpegs)}")

    def one_pass() -> int:
        pending, count = None, 0
        for i in range(0, n, batch):
            out = predict(variables, pipeline.decode_batch(jpegs[i : i + batch], spec.image_size))
            if pending is not None:
                count += len(np.asarray(pending["gender"]))
            pending = out
        return count + len(np.asarray(pending["gender"]))

    one_pass()  # compile
    start = time.perf_counter()
    count = sum(one_pass() for _ in range(rounds))
    elapsed = time.perf_counter() - start
    if traces != 1:
        raise RuntimeError(f"inference predict traced {traces} times; expected 1")
    return {"img_s": count / elapsed, "batch": batch, "model": spec.key,
            "image_size": spec.image_size, "images": count}
