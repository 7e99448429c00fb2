"""ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks, Keras `applications.ResNet50` layout).

ResNet-50 follows Keras layer for layer so ImageNet weights can be imported: convs with bias,
BatchNorm epsilon 1.001e-5, the stride on each stage's first 1x1 conv, projection shortcuts
created before the block's main path. ResNet-18/34 use the usual bias-free basic blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any


class BasicBlock(nn.Module):
    """3x3 -> 3x3 with a projection shortcut where the shape changes."""

    filters: int
    strides: int = 1
    conv: Any = None
    norm: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        shortcut = x
        if x.shape[-1] != self.filters or self.strides != 1:
            shortcut = self.conv(self.filters, (1, 1), strides=self.strides, name="proj_conv")(x)
            shortcut = self.norm(name="proj_bn")(shortcut)
        y = self.conv(self.filters, (3, 3), strides=self.strides, name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = self.conv(self.filters, (3, 3), name="conv2")(y)
        y = self.norm(name="bn2", scale_init=nn.initializers.zeros)(y)
        return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
    """Keras ResNet50 `block1`: 1x1(stride) -> 3x3 -> 1x1(x4), shortcut conv first if needed."""

    filters: int
    strides: int = 1
    conv: Any = None
    norm: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        out_ch = 4 * self.filters
        shortcut = x
        if x.shape[-1] != out_ch or self.strides != 1:
            shortcut = self.conv(out_ch, (1, 1), strides=self.strides, name="proj_conv")(x)
            shortcut = self.norm(name="proj_bn")(shortcut)
        y = self.conv(self.filters, (1, 1), strides=self.strides, name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = self.conv(self.filters, (3, 3), name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.conv(out_ch, (1, 1), name="conv3")(y)
        y = self.norm(name="bn3")(y)
        return nn.relu(y + shortcut)


class ResNet(Backbone):
    """ResNet trunk (7x7/2 stem, 3x3/2 max-pool, four stages) returning the last feature map.

    `stem_pool=False` drops the max-pool: stage 1 runs at half the input side instead of a
    quarter, the usual choice for small faces (64 px -> 32x32), at 4x the cost per channel.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    block: str = "bottleneck"  # or "basic"
    width: float = 1.0
    use_bias: bool = True
    bn_epsilon: float = 1.001e-5
    stem_pool: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer(use_bias=self.use_bias)
        norm = self.norm_layer(train, epsilon=self.bn_epsilon)
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
        x = x.astype(self.dtype)
        x = conv(scaled(64, self.width), (7, 7), strides=2, padding=[(3, 3)] * 2, name="stem_conv")(
            x
        )
        x = nn.relu(norm(name="stem_bn")(x))
        if self.stem_pool:
            x = max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1)] * 2)
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                x = block_cls(  # rounded here too: the shortcut compares widths
                    self.channels(scaled(64 * 2**i, self.width)),
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x)
        return x


ResNet18 = functools.partial(
    ResNet, stage_sizes=(2, 2, 2, 2), block="basic", use_bias=False, bn_epsilon=1e-5
)
ResNet34 = functools.partial(
    ResNet, stage_sizes=(3, 4, 6, 3), block="basic", use_bias=False, bn_epsilon=1e-5
)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
