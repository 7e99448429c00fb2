"""A plain CNN: conv blocks (conv-BN-ReLU-max-pool), then residual blocks with BN and dropout.

Its per-task branches (Linear -> ReLU -> Dropout, one branch with alpha dropout) are the shared
head's options: `head_hidden=(256,)`, `dropout`, `alpha_dropout_tasks=("age",)` (see its config).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any


class ResBlockCNN(Backbone):
    conv_filters: Sequence[int] = (32, 64, 128)
    res_blocks: int = 2
    dropout: float = 0.2
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer()
        norm = self.norm_layer(train)
        x = x.astype(self.dtype)
        for i, filters in enumerate(self.conv_filters):
            x = conv(scaled(filters, self.width), (3, 3), name=f"conv{i + 1}")(x)
            x = nn.relu(norm(name=f"conv{i + 1}_bn")(x))
            x = max_pool(x, (2, 2), strides=(2, 2))
        channels = x.shape[-1]
        for i in range(self.res_blocks):
            y = nn.relu(
                norm(name=f"res{i + 1}_bn1")(conv(channels, (3, 3), name=f"res{i + 1}_a")(x))
            )
            y = nn.Dropout(self.dropout, deterministic=not train)(y)
            y = norm(name=f"res{i + 1}_bn2")(conv(channels, (3, 3), name=f"res{i + 1}_b")(y))
            x = nn.relu(x + y)
        return x
