"""VGG-19 trunk as Keras `applications.VGG19(include_top=False)`: 16 biased 3x3 convs, 5 pools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any


class VGG(Backbone):
    """Blocks of 3x3 conv + ReLU, each followed by a 2x2 max-pool; no BatchNorm (as in Keras)."""

    block_sizes: Sequence[int] = (2, 2, 4, 4, 4)
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer(use_bias=True)
        x = x.astype(self.dtype)
        for b, n in enumerate(self.block_sizes):
            filters = scaled(64 * 2 ** min(b, 3), self.width)
            for i in range(n):
                x = nn.relu(conv(filters, (3, 3), name=f"block{b + 1}_conv{i + 1}")(x))
            x = max_pool(x, (2, 2), strides=(2, 2))
        return x


VGG19 = VGG
