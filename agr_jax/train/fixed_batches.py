"""Runs a jitted function over arrays of any length in one fixed batch shape."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def padded_parts(batch: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """(a batch_size-row copy of each run of `batch`, how many of its rows are real): one
    compiled program for every length, the rows past the real ones zero. The buffer is
    reused, so use each part before taking the next."""
    padded = np.zeros((batch_size, *batch.shape[1:]), batch.dtype)
    for start in range(0, len(batch), batch_size):
        part = batch[start:start + batch_size]
        padded[:len(part)] = part
        padded[len(part):] = 0
        yield padded, len(part)
