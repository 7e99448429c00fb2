"""ONNX under onnxruntime beside the jitted JAX predictor, on the same crops and batch.

For the `predict` benchmark section: `onnx_beside_jax(bundle)` exports the bundle to a
temporary ONNX file and times both on uint8 crops (no decoding), compile excluded.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agr_jax.inference import export
from agr_jax.inference.bundle import Bundle


def crops_per_second(run: Callable[[np.ndarray], Any], crops: np.ndarray, batch: int,
                     rounds: int) -> float:
    chunks = [crops[i:i + batch] for i in range(0, len(crops) - batch + 1, batch)]
    run(chunks[0])  # compile / warm up
    start = time.perf_counter()
    for _ in range(rounds):
        for chunk in chunks:
            run(chunk)
    return rounds * len(chunks) * batch / (time.perf_counter() - start)


def onnx_beside_jax(bundle: Bundle, batch: int = 128, images: int = 1024, rounds: int = 2,
                    threads: int = 0, seed: int = 0) -> dict[str, Any]:
    """{"onnx_crops_s", "jax_crops_s", "onnx_over_jax", "max_abs_diff", ...}: the same
    calibrated outputs from both (the difference is reported, not assumed)."""
    from agr_jax.inference.predictor import Predictor

    size = bundle.image_size
    crops = np.random.default_rng(seed).integers(0, 256, (max(images, batch), size, size, 3),
                                                 dtype=np.uint8)
    predictor = Predictor(bundle, buckets=(batch,))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export.export(bundle, "onnx", path)
        onnx_run = export.load_onnx(path, threads)
        onnx_s = crops_per_second(onnx_run, crops, batch, rounds)
        got = onnx_run(crops[:batch])
    jax_s = crops_per_second(predictor.predict_crops, crops, batch, rounds)
    want = predictor.predict_crops(crops[:batch])
    diff = max(float(np.nanmax(np.abs(np.asarray(got[k], np.float64) - want[k])))
               if np.isfinite(want[k]).any() else 0.0 for k in export.OUTPUTS)
    return {"onnx_crops_s": onnx_s, "jax_crops_s": jax_s, "onnx_over_jax": onnx_s / jax_s,
            "batch": batch, "image_size": size, "crops": len(crops), "max_abs_diff": diff}
