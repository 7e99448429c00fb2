"""The service's limits: light to import, so the entry point's parser needs no JAX."""

from __future__ import annotations

import dataclasses

# The predictor's detectors (`Predictor.DETECTORS`; tests/test_serve.py checks they agree).
DETECTORS = ("mtcnn", "haar", "none")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 2**20  # request body
    max_faces: int = 32  # face records per request
    timeout_s: float = 10.0  # per request, decode to answer
    max_batch: int = 32  # images per device call
    max_wait_ms: float = 5.0  # how long an idle device waits for company


DEFAULT = Limits()
