"""Per-age weights for the age loss: the rare ages (children, the elderly) count for more.

UTKFace's training ages pile up at 20-40 and at 1-year-olds; past 60 each year has a few
dozen faces. An age head trained on the plain mean loss learns the crowded middle and reads
the elderly younger and teenagers older. Label distribution smoothing (Yang et al. 2021,
"Delving into deep imbalanced regression") weights each face by the inverse square root of
its age's frequency, smoothed over neighbouring years with a Gaussian kernel so a year with
few faces borrows from its neighbours; the weights are scaled to mean 1 over the training
faces (the loss keeps its scale) and capped (one mislabelled 110-year-old stays one face).
"""

from __future__ import annotations

import numpy as np

AGE_BALANCE = ("none", "sqrt_inv", "inv")


def age_weights(ages: np.ndarray, max_age: float, method: str = "sqrt_inv",
                sigma: float = 2.0, cap: float = 5.0) -> np.ndarray | None:
    """float32 [floor(max_age) + 1]: the weight of a face of each whole age (None for
    "none"). `sigma`: the smoothing kernel's width in years (0: raw counts); `cap`: the
    largest weight after scaling to mean 1 over `ages`."""
    if method not in AGE_BALANCE:
        raise ValueError(f"tasks.age_balance: expected one of {AGE_BALANCE}, got {method!r}")
    if method == "none":
        return None
    ages = np.asarray(ages, np.float64)
    if ages.size == 0:
        raise ValueError("tasks.age_balance: no training ages to count")
    years = int(np.floor(max_age)) + 1
    index = np.clip(np.rint(ages), 0, years - 1).astype(np.int64)
    counts = np.bincount(index, minlength=years).astype(np.float64)
    if sigma > 0:
        span = np.arange(years, dtype=np.float64)
        kernel = np.exp(-0.5 * ((span[:, None] - span[None, :]) / sigma) ** 2)
        counts = kernel @ counts / kernel.sum(axis=1)
    power = 0.5 if method == "sqrt_inv" else 1.0
    weights = np.maximum(counts, 1e-3) ** -power
    weights /= weights[index].mean()
    return np.minimum(weights, cap).astype(np.float32)


def weight_of(ages, table):
    """Each face's weight (jax or numpy ages in years, `age_weights`' table)."""
    import jax.numpy as jnp

    index = jnp.clip(jnp.round(ages), 0, table.shape[0] - 1).astype(jnp.int32)
    return jnp.asarray(table)[index]
