"""Ready means compiled: every program the service can run is built before it says ready.

The model's forward for each bucket, each served detector's own programs (its `warmup()`,
which compiles every canvas x batch shape it can run; YuNet has one), and one request of
each path the service serves (a crop, and a small and a phone-sized photo through the load
path), so that nothing a request does compiles. `/metrics` counts every XLA compile after
ready (`agr_xla_compiles_after_ready`); tests/test_serve.py checks it stays 0.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)
PHOTO_SIZES = ((480, 640), (3000, 4000))  # (height, width): a webcam frame, a phone photo


def jpeg(height: int, width: int) -> bytes:
    """A flat grey JPEG: decodes through the same path as a user's photo."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (118, 118, 118)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def warm(predictor: Any, served: Sequence[str]) -> dict[str, Any]:
    """Compiles what `served` (detector names, "none" for crops) can run; returns, per
    detector, how many programs its own warmup() built (None: it has no warmup())."""
    size = predictor.bundle.image_size
    for bucket in predictor.buckets:
        predictor.predict_crops(np.zeros((bucket, size, size, 3), np.uint8))
    report: dict[str, Any] = {"model_buckets": list(predictor.buckets)}
    for name in served:
        if name == "none":
            predictor.predict_loaded([predictor.load(jpeg(2 * size, 2 * size), 0, name)], name)
            continue
        detector = predictor.detector(name)
        warmup = getattr(detector, "warmup", None)
        report[name] = {"programs": warmup() if callable(warmup) else None}
        if not callable(warmup):
            logger.warning("detector %s has no warmup(): shapes it has not seen compile on "
                           "first use (agr_xla_compiles_after_ready counts them)", name)
        for height, width in PHOTO_SIZES:  # the load path with its working copy
            predictor.predict_loaded([predictor.load(jpeg(height, width), 0, name)], name)
    return report
