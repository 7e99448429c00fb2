"""Xception as Keras `applications.Xception(include_top=False)`: entry, middle and exit flows.

Layer for layer with Keras (weights importable): bias-free convs and separable convs,
BatchNorm epsilon 1e-3, each strided residual projection created before its block's main path.
`width` scales every channel count and `middle_blocks` the middle flow for tiny variants.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, SeparableConv, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any


class Xception(Backbone):
    width: float = 1.0
    middle_blocks: int = 8

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer()
        norm = self.norm_layer(train, epsilon=1e-3)
        sep = functools.partial(SeparableConv, conv=conv)
        ch = functools.partial(scaled, width=self.width)
        pool = functools.partial(max_pool, window_shape=(3, 3), strides=(2, 2), padding="SAME")

        x = x.astype(self.dtype)
        x = conv(ch(32), (3, 3), strides=2, padding="VALID", name="block1_conv1")(x)
        x = nn.relu(norm(name="block1_conv1_bn")(x))
        x = conv(ch(64), (3, 3), padding="VALID", name="block1_conv2")(x)
        x = nn.relu(norm(name="block1_conv2_bn")(x))

        # Entry flow: blocks 2-4, each two separable convs, a max-pool and a strided projection.
        for block, filters in zip((2, 3, 4), (128, 256, 728), strict=True):
            residual = conv(ch(filters), (1, 1), strides=2, name=f"block{block}_residual")(x)
            residual = norm(name=f"block{block}_residual_bn")(residual)
            if block > 2:
                x = nn.relu(x)
            x = sep(ch(filters), name=f"block{block}_sepconv1")(x)
            x = nn.relu(norm(name=f"block{block}_sepconv1_bn")(x))
            x = sep(ch(filters), name=f"block{block}_sepconv2")(x)
            x = norm(name=f"block{block}_sepconv2_bn")(x)
            x = pool(x) + residual

        # Middle flow: identity-shortcut blocks of three ReLU-separable conv-BN units.
        for b in range(5, 5 + self.middle_blocks):
            residual = x
            for i in (1, 2, 3):
                x = sep(ch(728), name=f"block{b}_sepconv{i}")(nn.relu(x))
                x = norm(name=f"block{b}_sepconv{i}_bn")(x)
            x = x + residual

        # Exit flow.
        exit_block = 5 + self.middle_blocks
        residual = conv(ch(1024), (1, 1), strides=2, name="exit_residual")(x)
        residual = norm(name="exit_residual_bn")(residual)
        x = sep(ch(728), name=f"block{exit_block}_sepconv1")(nn.relu(x))
        x = norm(name=f"block{exit_block}_sepconv1_bn")(x)
        x = sep(ch(1024), name=f"block{exit_block}_sepconv2")(nn.relu(x))
        x = norm(name=f"block{exit_block}_sepconv2_bn")(x)
        x = pool(x) + residual
        x = sep(ch(1536), name=f"block{exit_block + 1}_sepconv1")(x)
        x = nn.relu(norm(name=f"block{exit_block + 1}_sepconv1_bn")(x))
        x = sep(ch(2048), name=f"block{exit_block + 1}_sepconv2")(x)
        return nn.relu(norm(name=f"block{exit_block + 1}_sepconv2_bn")(x))
