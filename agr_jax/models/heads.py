"""Shared multi-task heads: pooled trunk features -> one MLP per task -> logits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import dense_factory

Dtype = Any


def global_pool(x: jnp.ndarray, pooling: str) -> jnp.ndarray:
    """NHWC -> NC. Max pooling is the default for face attributes (strongest local evidence)."""
    if x.ndim == 2:
        return x
    if pooling == "max":
        return jnp.max(x, axis=(1, 2))
    if pooling == "avg":
        return jnp.mean(x, axis=(1, 2))
    raise ValueError(f"model.pooling: expected 'max' or 'avg', got {pooling!r}")


class TaskMLP(nn.Module):
    """Dense-ReLU(-Dropout) stack ending in `num_outputs` float32 logits."""

    num_outputs: int
    hidden: Sequence[int] = (128, 128)
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        dense = dense_factory(self.dtype, self.param_dtype)
        for i, units in enumerate(self.hidden):
            x = nn.relu(dense(units, name=f"hidden_{i}")(x))
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = dense(self.num_outputs, name="logits")(x)
        return logits.astype(jnp.float32)


class MultiTaskHead(nn.Module):
    """Pool once, then one independent MLP per task (so per-task LRs/freezing act per head)."""

    outputs: Mapping[str, int]
    hidden: Sequence[int] = (128, 128)
    pooling: str = "max"
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, feature_map: jnp.ndarray, train: bool
    ) -> tuple[dict[str, jnp.ndarray], dict[str, jnp.ndarray]]:
        pooled = global_pool(feature_map, self.pooling)
        logits = {
            task: TaskMLP(
                num_outputs=n,
                hidden=tuple(self.hidden),
                dropout=self.dropout,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=task,
            )(pooled, train)
            for task, n in self.outputs.items()
        }
        return logits, {"pre_logits": pooled.astype(jnp.float32)}


class MultiTaskModel(nn.Module):
    """Backbone + shared heads; the model contract of DESIGN.md section 3.

    `backbone(images, train)` returns either a feature map or `(feature_map, extra_features)`;
    extra features (e.g. a FaceNet `embedding`) are merged into the returned features dict.
    """

    backbone: nn.Module
    head: MultiTaskHead

    def __call__(
        self, images: jnp.ndarray, train: bool = False
    ) -> tuple[dict[str, jnp.ndarray], dict[str, jnp.ndarray]]:
        out = self.backbone(images, train)
        extra: dict[str, jnp.ndarray] = {}
        if isinstance(out, tuple):
            out, extra = out
        logits, features = self.head(out, train)
        features = {**features, **extra, "feature_map": out}
        return logits, features
