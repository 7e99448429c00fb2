"""Shallow CNN with local response normalisation (Levi & Hassner 2015 style, 128 px).

Three convs (7x7/32, 5x5/64, 3x3/64), each ReLU -> 3x3/2 max-pool -> LRN, then FC 512 and
FC 100 with ReLU and dropout. `grayscale=True` converts RGB input to luminance first, so the
same data pipeline feeds both variants.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, dense_factory, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any

_LUMA = (0.299, 0.587, 0.114)


def local_response_norm(
    x: jnp.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> jnp.ndarray:
    """Cross-channel LRN (Krizhevsky et al.): x / (k + alpha/size * sum_window x^2)^beta."""
    sq = jnp.square(x.astype(jnp.float32))
    half = size // 2
    window_sum = jax.lax.reduce_window(
        sq,
        0.0,
        jax.lax.add,
        (1, 1, 1, size),
        (1, 1, 1, 1),
        [(0, 0)] * 3 + [(half, size - 1 - half)],
    )
    return (x / jnp.power(k + alpha / size * window_sum, beta)).astype(x.dtype)


class ShallowLRN(Backbone):
    width: float = 1.0
    grayscale: bool = False
    fc_sizes: tuple[int, int] = (512, 100)
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer(use_bias=True)
        dense = dense_factory(self.dtype, self.param_dtype)
        if self.grayscale:
            x = jnp.tensordot(x, jnp.asarray(_LUMA, x.dtype), axes=([-1], [0]))[..., None]
        x = x.astype(self.dtype)
        for i, (filters, kernel) in enumerate(((32, 7), (64, 5), (64, 3))):
            x = nn.relu(conv(scaled(filters, self.width), (kernel, kernel), name=f"conv{i + 1}")(x))
            x = max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            x = local_response_norm(x)
        x = x.reshape(x.shape[0], -1)
        for i, units in enumerate(self.fc_sizes):
            x = nn.relu(dense(scaled(units, self.width), name=f"fc{i + 1}")(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x
