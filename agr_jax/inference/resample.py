"""Area resampling exactly as torch's interpolate(mode="area") (adaptive average pooling).

Output pixel i averages input rows floor(i*n/m) .. ceil((i+1)*n/m) - 1: MTCNN's pyramid and
crops are built this way, so parity with facenet-pytorch needs the same bins. Sums come from
float64 cumulative sums (one pass per axis), so any output size costs O(input).
"""

from __future__ import annotations

import numpy as np


def _bins(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(m)
    return (i * n) // m, -((-(i + 1) * n) // m)


def _area_axis(x: np.ndarray, m: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    start, end = _bins(n, m)
    csum = np.cumsum(x, axis=axis, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)
    shape = [1] * x.ndim
    shape[axis] = m
    return (np.take(csum, end, axis=axis) - np.take(csum, start, axis=axis)) / (
        end - start).reshape(shape)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) -> (height, width, C) float32 by area averaging (torch's bins)."""
    if image.ndim != 3 or min(image.shape[:2]) < 1 or height < 1 or width < 1:
        raise ValueError(f"area_resize: bad shapes {image.shape} -> ({height}, {width})")
    out = _area_axis(_area_axis(image, height, 0), width, 1)
    return out.astype(np.float32)
