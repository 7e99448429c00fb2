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


def _cumsum0(x: np.ndarray, axis: int) -> np.ndarray:
    """float64 cumulative sums along `axis`, with a leading zero."""
    csum = np.cumsum(x, axis=axis, dtype=np.float64)
    return np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)


def _area_from_cumsum(csum: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    start, end = _bins(n, m)
    shape = [1] * csum.ndim
    shape[axis] = m
    return (np.take(csum, end, axis=axis) - np.take(csum, start, axis=axis)) / (
        end - start).reshape(shape)


def _area_axis(x: np.ndarray, m: int, axis: int) -> np.ndarray:
    return _area_from_cumsum(_cumsum0(x, axis), x.shape[axis], m, axis)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) -> (height, width, C) float32 by area averaging (torch's bins)."""
    return area_pyramid(image, [(height, width)])[0]


def area_pyramid(image: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The image area-resized to every (h, w) of `sizes`, float32, the rows' cumulative sums
    taken once for all sizes: each level is what resizing to it alone gives, bit for bit (an
    MTCNN pyramid has ~10 levels, and one full-image pass per level was most of the
    detector's host time). `area_resize` is the one-size case."""
    if image.ndim != 3 or min(image.shape[:2]) < 1 or any(min(s) < 1 for s in sizes):
        raise ValueError(f"area resize: bad shapes {image.shape} -> {sizes}")
    rows = _cumsum0(image, 0)
    return [_area_axis(_area_from_cumsum(rows, image.shape[0], h, 0), w, 1).astype(np.float32)
            for h, w in sizes]
