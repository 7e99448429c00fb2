"""MobileNet v1 as Keras `applications.MobileNet(include_top=False)`, with width multiplier alpha.

Keras layout: 3x3/2 conv stem then 13 depthwise-separable blocks (depthwise 3x3 -> BN -> ReLU6
-> pointwise 1x1 -> BN -> ReLU6), no biases, BatchNorm epsilon 1e-3; strided layers pad
bottom/right by one and use VALID padding (TF "same" for even inputs, as Keras does).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone

Dtype = Any

# (pointwise filters, stride) of the 13 depthwise-separable blocks.
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip

_PAD_BR = [(0, 1), (0, 1)]  # Keras ZeroPadding2D(((0, 1), (0, 1))) before strided convs


class MobileNet(Backbone):
    """MobileNet v1 trunk; `num_blocks` < 13 truncates it (tiny test variants)."""

    alpha: float = 1.0
    depth_multiplier: int = 1
    num_blocks: int = len(BLOCKS)

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer()
        norm = self.norm_layer(train, epsilon=1e-3)
        x = x.astype(self.dtype)
        x = conv(int(32 * self.alpha), (3, 3), strides=2, padding=_PAD_BR, name="conv1")(x)
        x = nn.relu6(norm(name="conv1_bn")(x))
        for i, (filters, stride) in enumerate(BLOCKS[: self.num_blocks]):
            channels = x.shape[-1]
            x = conv(
                channels * self.depth_multiplier,
                (3, 3),
                strides=stride,
                padding="SAME" if stride == 1 else _PAD_BR,
                feature_group_count=channels,
                name=f"conv_dw_{i + 1}",
            )(x)
            x = nn.relu6(norm(name=f"conv_dw_{i + 1}_bn")(x))
            x = conv(int(filters * self.alpha), (1, 1), name=f"conv_pw_{i + 1}")(x)
            x = nn.relu6(norm(name=f"conv_pw_{i + 1}_bn")(x))
        return x
