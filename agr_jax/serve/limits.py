"""The service's limits: light to import, so the entry point's parser needs no JAX."""

from __future__ import annotations

import dataclasses

# The predictor's detectors (`predictor.DETECTORS`; tests/test_serve.py checks they agree).
DETECTORS = ("yunet", "mtcnn", "haar", "none")
DEFAULT_DETECTOR = "yunet"  # `predictor.DEFAULT_DETECTOR`, checked by the same test


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20  # request body (a 4000x3000 phone JPEG is 3-8 MB)
    max_faces: int = 32  # face records per request
    timeout_s: float = 10.0  # per request, decode to answer (then 504)
    body_timeout_s: float = 10.0  # to receive the whole body (slow clients: then 408)
    max_batch: int = 32  # crops per device call (the crop lane)
    max_batch_photos: int = 4  # photos per detector call: bounds how long one call holds
    photo_workers: int = 2  # detector calls that may overlap (host work beside the device's)
    max_wait_ms: float = 5.0  # how long an idle device waits for company
    max_pending: int = 64  # requests one lane holds at once (more: 503 with Retry-After)
    decode_threads: int = 2  # per lane
    max_connections: int = 256  # uvicorn's limit_concurrency (more: 503 at once)


DEFAULT = Limits()
