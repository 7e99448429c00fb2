"""RoR: residual networks of residual networks (Zhang et al., 2017), pre-activation bottlenecks.

Three shortcut levels: around each bottleneck block, around each stage, and from the stem
output to the end of the trunk. Level-2/1 shortcuts are 1x1 projections with the stage's
(or whole network's) stride, as in RoR-3 with pre-activation units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone
from agr_jax.models.pooling import max_pool

Dtype = Any


class PreActBottleneck(nn.Module):
    """BN-ReLU-1x1 -> BN-ReLU-3x3(stride) -> BN-ReLU-1x1(x expansion), plus the block shortcut."""

    filters: int
    strides: int = 1
    expansion: int = 4
    conv: Any = None
    norm: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        out_ch = self.filters * self.expansion
        pre = nn.relu(self.norm(name="bn_in")(x))
        if x.shape[-1] != out_ch or self.strides != 1:
            shortcut = self.conv(out_ch, (1, 1), strides=self.strides, name="proj")(pre)
        else:
            shortcut = x
        y = self.conv(self.filters, (1, 1), name="conv1")(pre)
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.conv(self.filters, (3, 3), strides=self.strides, name="conv2")(y)
        y = nn.relu(self.norm(name="bn3")(y))
        y = self.conv(out_ch, (1, 1), name="conv3")(y)
        return y + shortcut


class RoR(Backbone):
    """RoR trunk returning the final (BN-ReLU'd) feature map, NHWC."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = self.conv_layer()
        norm = self.norm_layer(train)
        x = x.astype(self.dtype)
        x = conv(self.width, (7, 7), strides=2, padding=[(3, 3), (3, 3)], name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        x = max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        network_input = x
        total_stride = 1
        for i, num_blocks in enumerate(self.stage_sizes):
            filters = self.width * 2**i
            stage_stride = 1 if i == 0 else 2
            total_stride *= stage_stride
            stage_input = x
            for j in range(num_blocks):
                x = PreActBottleneck(
                    filters,
                    strides=stage_stride if j == 0 else 1,
                    expansion=self.expansion,
                    conv=conv,
                    norm=norm,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x)
            x = x + conv(x.shape[-1], (1, 1), strides=stage_stride, name=f"stage{i + 1}_shortcut")(
                stage_input
            )
        x = x + conv(x.shape[-1], (1, 1), strides=total_stride, name="network_shortcut")(
            network_input
        )
        return nn.relu(norm(name="final_bn")(x))
