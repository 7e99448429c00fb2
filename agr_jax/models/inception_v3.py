"""Inception v3 as Keras `applications.InceptionV3(include_top=False)`, mixed0..mixed10.

Every conv is Keras' `conv2d_bn`: bias-free conv, BatchNorm without scale (epsilon 1e-3), ReLU.
Branches are built in Keras order so the layer sequence matches for weight import.
`width` scales every channel count and `mixed_blocks` < 11 stops after that many mixed blocks
(tiny test variants; the input must stay >= 75 px).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any


class ConvBN(nn.Module):
    """Conv -> BatchNorm(center only) -> ReLU."""

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: str = "SAME"
    conv: Any = None
    norm: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = self.conv(self.features, self.kernel_size, strides=self.strides, padding=self.padding)(
            x
        )
        return nn.relu(self.norm(use_scale=False)(x))


def _avg_pool_same(x: jnp.ndarray) -> jnp.ndarray:
    # Keras AveragePooling2D(padding="same") averages over valid pixels only.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)


def _max_pool_valid(x: jnp.ndarray) -> jnp.ndarray:
    return max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionV3(Backbone):
    width: float = 1.0
    mixed_blocks: int = 11

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer()
        norm = self.norm_layer(train, epsilon=1e-3)
        counter = iter(range(1000))

        def cbn(x, filters, kh, kw, strides=1, padding="SAME"):
            return ConvBN(
                scaled(filters, self.width),
                (kh, kw),
                strides=strides,
                padding=padding,
                conv=conv,
                norm=norm,
                name=f"conv{next(counter)}",
            )(x)

        x = x.astype(self.dtype)
        x = cbn(x, 32, 3, 3, strides=2, padding="VALID")
        x = cbn(x, 32, 3, 3, padding="VALID")
        x = cbn(x, 64, 3, 3)
        x = _max_pool_valid(x)
        x = cbn(x, 80, 1, 1, padding="VALID")
        x = cbn(x, 192, 3, 3, padding="VALID")
        x = _max_pool_valid(x)

        for pool_filters in (32, 64, 64)[: self.mixed_blocks]:  # mixed0-2: 35x35
            b1 = cbn(x, 64, 1, 1)
            b5 = cbn(cbn(x, 48, 1, 1), 64, 5, 5)
            b3 = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
            bp = cbn(_avg_pool_same(x), pool_filters, 1, 1)
            x = jnp.concatenate([b1, b5, b3, bp], axis=-1)

        if self.mixed_blocks <= 3:
            return x
        # mixed3: reduction to 17x17.
        b3 = cbn(x, 384, 3, 3, strides=2, padding="VALID")
        bd = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, strides=2, padding="VALID")
        x = jnp.concatenate([b3, bd, _max_pool_valid(x)], axis=-1)

        for c in (128, 160, 160, 192)[: max(self.mixed_blocks - 4, 0)]:  # mixed4-7: 7x7
            b1 = cbn(x, 192, 1, 1)
            b7 = cbn(cbn(cbn(x, c, 1, 1), c, 1, 7), 192, 7, 1)
            bd = cbn(x, c, 1, 1)
            bd = cbn(cbn(cbn(cbn(bd, c, 7, 1), c, 1, 7), c, 7, 1), 192, 1, 7)
            bp = cbn(_avg_pool_same(x), 192, 1, 1)
            x = jnp.concatenate([b1, b7, bd, bp], axis=-1)

        if self.mixed_blocks <= 8:
            return x
        # mixed8: reduction to 8x8.
        b3 = cbn(cbn(x, 192, 1, 1), 320, 3, 3, strides=2, padding="VALID")
        b7 = cbn(cbn(cbn(cbn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, 2, "VALID")
        x = jnp.concatenate([b3, b7, _max_pool_valid(x)], axis=-1)

        for _ in range(min(self.mixed_blocks - 9, 2)):  # mixed9-10: expanded filter banks
            b1 = cbn(x, 320, 1, 1)
            b3 = cbn(x, 384, 1, 1)
            b3 = jnp.concatenate([cbn(b3, 384, 1, 3), cbn(b3, 384, 3, 1)], axis=-1)
            bd = cbn(cbn(x, 448, 1, 1), 384, 3, 3)
            bd = jnp.concatenate([cbn(bd, 384, 1, 3), cbn(bd, 384, 3, 1)], axis=-1)
            bp = cbn(_avg_pool_same(x), 192, 1, 1)
            x = jnp.concatenate([b1, b3, bd, bp], axis=-1)
        return x
