"""Inception-ResNet-v1: the FaceNet trunk (Schroff et al. 2015; davidsandberg/facenet layout).

Stem -> 5x block35 (A) -> reduction A -> 10x block17 (B) -> reduction B -> 5x block8 (C)
-> a final block8 without ReLU -> average pool -> 128-d bottleneck (+BN) -> L2 normalise.
Convs are bias-free with BatchNorm (no scale, epsilon 1e-3) and ReLU; the residual "up"
projections of each block are plain biased 1x1 convs, scaled before the sum (0.17/0.10/0.20).

The backbone returns `(feature_map, {"embedding": ...})`: the shared heads pool the feature map,
while the L2-normalised 128-d embedding (meaningful with imported FaceNet weights) is exposed
in the model's features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, dense_factory, scaled
from agr_jax.models.pooling import max_pool

Dtype = Any


class InceptionResNetV1(Backbone):
    width: float = 1.0
    repeats: Sequence[int] = (5, 10, 5)
    embedding_size: int = 128
    dropout: float = 0.0

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, train: bool = False
    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        conv = self.conv_layer()
        norm = self.norm_layer(train, epsilon=1e-3)
        ch = lambda c: scaled(c, self.width)

        def cbn(x, filters, kernel, strides=1, padding="SAME", name=None):
            x = conv(ch(filters), kernel, strides=strides, padding=padding, name=name)(x)
            return nn.relu(norm(use_scale=False, name=f"{name}_bn")(x))

        def residual(x, branches: Callable, scale: float, name: str, activate: bool = True):
            mixed = jnp.concatenate(branches(x, name), axis=-1)
            up = conv(x.shape[-1], (1, 1), use_bias=True, name=f"{name}_up")(mixed)
            x = x + scale * up
            return nn.relu(x) if activate else x

        def block35(x, n):
            b0 = cbn(x, 32, (1, 1), name=f"{n}_b0")
            b1 = cbn(cbn(x, 32, (1, 1), name=f"{n}_b1a"), 32, (3, 3), name=f"{n}_b1b")
            b2 = cbn(x, 32, (1, 1), name=f"{n}_b2a")
            b2 = cbn(cbn(b2, 32, (3, 3), name=f"{n}_b2b"), 32, (3, 3), name=f"{n}_b2c")
            return [b0, b1, b2]

        def block17(x, n):
            b0 = cbn(x, 128, (1, 1), name=f"{n}_b0")
            b1 = cbn(x, 128, (1, 1), name=f"{n}_b1a")
            b1 = cbn(cbn(b1, 128, (1, 7), name=f"{n}_b1b"), 128, (7, 1), name=f"{n}_b1c")
            return [b0, b1]

        def block8(x, n):
            b0 = cbn(x, 192, (1, 1), name=f"{n}_b0")
            b1 = cbn(x, 192, (1, 1), name=f"{n}_b1a")
            b1 = cbn(cbn(b1, 192, (1, 3), name=f"{n}_b1b"), 192, (3, 1), name=f"{n}_b1c")
            return [b0, b1]

        pool = lambda x: max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        x = x.astype(self.dtype)
        x = cbn(x, 32, (3, 3), strides=2, padding="VALID", name="conv1a")
        x = cbn(x, 32, (3, 3), padding="VALID", name="conv2a")
        x = cbn(x, 64, (3, 3), name="conv2b")
        x = pool(x)
        x = cbn(x, 80, (1, 1), padding="VALID", name="conv3b")
        x = cbn(x, 192, (3, 3), padding="VALID", name="conv4a")
        x = cbn(x, 256, (3, 3), strides=2, padding="VALID", name="conv4b")

        for i in range(self.repeats[0]):
            x = residual(x, block35, 0.17, f"block35_{i + 1}")
        # Reduction A (k=192, l=192, m=256, n=384).
        b0 = cbn(x, 384, (3, 3), strides=2, padding="VALID", name="red_a_b0")
        b1 = cbn(cbn(x, 192, (1, 1), name="red_a_b1a"), 192, (3, 3), name="red_a_b1b")
        b1 = cbn(b1, 256, (3, 3), strides=2, padding="VALID", name="red_a_b1c")
        x = jnp.concatenate([b0, b1, pool(x)], axis=-1)

        for i in range(self.repeats[1]):
            x = residual(x, block17, 0.10, f"block17_{i + 1}")
        # Reduction B.
        b0 = cbn(cbn(x, 256, (1, 1), name="red_b_b0a"), 384, (3, 3), 2, "VALID", "red_b_b0b")
        b1 = cbn(cbn(x, 256, (1, 1), name="red_b_b1a"), 256, (3, 3), 2, "VALID", "red_b_b1b")
        b2 = cbn(cbn(x, 256, (1, 1), name="red_b_b2a"), 256, (3, 3), name="red_b_b2b")
        b2 = cbn(b2, 256, (3, 3), strides=2, padding="VALID", name="red_b_b2c")
        x = jnp.concatenate([b0, b1, b2, pool(x)], axis=-1)

        for i in range(self.repeats[2]):
            x = residual(x, block8, 0.20, f"block8_{i + 1}")
        x = residual(x, block8, 1.0, "block8_final", activate=False)

        pooled = jnp.mean(x, axis=(1, 2))
        pooled = nn.Dropout(self.dropout, deterministic=not train)(pooled)
        bottleneck = dense_factory(self.dtype, self.param_dtype)(
            self.embedding_size, use_bias=False, name="bottleneck"
        )(pooled)
        bottleneck = norm(use_scale=False, name="bottleneck_bn")(bottleneck).astype(jnp.float32)
        norm_sq = jnp.sum(jnp.square(bottleneck), axis=-1, keepdims=True)
        embedding = bottleneck * jnp.reciprocal(jnp.sqrt(jnp.maximum(norm_sq, 1e-10)))
        return x, {"embedding": embedding}
