"""Shared multi-task heads: pooled trunk features -> one MLP per task -> logits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from agr_jax.models.layers import dense_factory

Dtype = Any

# uint8 pixels p -> (p / 255 - 0.5) / 0.5, i.e. [-1, 1]: per-channel mean and std of 0.5.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 127.5


def normalize_pixels(images: jnp.ndarray) -> jnp.ndarray:
    """uint8 RGB images (what the pipeline and `predict` feed) -> float32 in [-1, 1].

    Done inside the jitted model so the host ships bytes; float inputs are taken as already
    normalised and pass through unchanged.
    """
    if images.dtype != jnp.uint8:
        return images
    return (images.astype(jnp.float32) - PIXEL_MEAN) * PIXEL_SCALE


def global_pool(x: jnp.ndarray, pooling: str) -> jnp.ndarray:
    """NHWC -> NC. Max pooling is the default for face attributes (strongest local evidence)."""
    if x.ndim == 2:
        return x
    if pooling == "max":
        return jnp.max(x, axis=(1, 2))
    if pooling == "avg":
        return jnp.mean(x, axis=(1, 2))
    raise ValueError(f"model.pooling: expected 'max' or 'avg', got {pooling!r}")


class AlphaDropout(nn.Module):
    """Alpha dropout (Klambauer et al. 2017): drops to SELU's negative saturation value and
    rescales so the activations keep zero mean and unit variance."""

    rate: float
    deterministic: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.deterministic or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        alpha_p = -1.7580993408473766  # -scale * alpha of SELU
        a = (keep + alpha_p**2 * keep * self.rate) ** -0.5
        b = -a * alpha_p * self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return (a * jnp.where(mask, x, alpha_p) + b).astype(x.dtype)


class TaskMLP(nn.Module):
    """Dense-ReLU(-Dropout) stack ending in `num_outputs` float32 logits.

    `rank_consistent` makes the last layer CORAL-style (Cao et al. 2020): one shared weight
    vector and `num_outputs` biases, so the K-1 ordinal logits cannot cross.
    """

    num_outputs: int
    hidden: Sequence[int] = (128, 128)
    dropout: float = 0.0
    alpha_dropout: bool = False
    rank_consistent: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        dense = dense_factory(self.dtype, self.param_dtype)
        for i, units in enumerate(self.hidden):
            x = nn.relu(dense(units, name=f"hidden_{i}")(x))
            if self.dropout > 0:
                drop = AlphaDropout if self.alpha_dropout else nn.Dropout
                x = drop(self.dropout, deterministic=not train)(x)
        if self.rank_consistent:
            score = dense(1, use_bias=False, name="logits")(x).astype(jnp.float32)
            biases = self.param(
                "rank_biases", nn.initializers.zeros, (self.num_outputs,), self.param_dtype
            )
            return score + biases.astype(jnp.float32)
        logits = dense(self.num_outputs, name="logits")(x)
        return logits.astype(jnp.float32)


class MultiTaskHead(nn.Module):
    """Pool once, then one independent MLP per task (so per-task LRs/freezing act per head)."""

    outputs: Mapping[str, int]
    hidden: Sequence[int] = (128, 128)
    pooling: str = "max"
    dropout: float = 0.0
    alpha_dropout_tasks: Sequence[str] = ()
    rank_consistent_tasks: Sequence[str] = ()
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
                alpha_dropout=task in self.alpha_dropout_tasks,
                rank_consistent=task in self.rank_consistent_tasks,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=task,
            )(pooled, train)
            for task, n in self.outputs.items()
        }
        return logits, {"pre_logits": pooled.astype(jnp.float32)}


class LossLogVars(nn.Module):
    """One trainable scalar s_t per task (initialised 0, i.e. weight 1), float32."""

    tasks: Sequence[str]

    @nn.compact
    def __call__(self) -> dict[str, jnp.ndarray]:
        return {t: self.param(t, nn.initializers.zeros, (), jnp.float32) for t in self.tasks}


class MultiTaskModel(nn.Module):
    """Backbone + shared heads; the model contract of docs/training.md ("Model zoo").

    `backbone(images, train)` returns either a feature map or `(feature_map, extra_features)`;
    extra features (e.g. a FaceNet `embedding`) are merged into the returned features dict.

    With `learned_loss_weights` (task names) the model also owns one log-variance s_t per task,
    `params["loss_log_vars"][task]`, so the optimiser trains them with everything else; the
    train step reads them for uncertainty weighting (`tasks.weighted_total`).
    """

    backbone: nn.Module
    head: MultiTaskHead
    learned_loss_weights: Sequence[str] = ()

    @nn.compact
    def __call__(
        self, images: jnp.ndarray, train: bool = False
    ) -> tuple[dict[str, jnp.ndarray], dict[str, jnp.ndarray]]:
        if self.learned_loss_weights:
            LossLogVars(tuple(self.learned_loss_weights), name="loss_log_vars")()
        out = self.backbone(normalize_pixels(images), train)
        extra: dict[str, jnp.ndarray] = {}
        if isinstance(out, tuple):
            out, extra = out
        logits, features = self.head(out, train)
        features = {**features, **extra, "feature_map": out}
        return logits, features
