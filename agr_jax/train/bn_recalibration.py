"""`config.init.recalibrate_bn_images`: BatchNorm statistics measured on the training images,
with the network's inference-mode function kept exactly.

Graph formats fold BatchNorm into the convolution (TF.js: faceres), so their importer writes
mean 0 and variance 1 with the folded scale and bias: right in inference mode. A training-mode
forward normalises by the batch's own statistics instead, so from the first fine-tuning step a
trunk imported that way computes something else than what it was trained to compute: the new
heads learn on features that validation (inference mode) never shows them, and the trunk's
own training starts from a disturbed net (docs/pretrained.md measured it). Measuring each
BatchNorm's input statistics on the training images in inference mode, then folding the change
into its scale and bias, keeps the inference-mode output identical and makes a training-mode
forward (batch statistics close to the measured ones) compute what the pretrained net does.
For weights with real statistics from another domain (ImageNet) it is AdaBN.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agr_jax.train import input as input_lib

log = logging.getLogger(__name__)

Path = tuple[str, ...]


class Rows:
    """The given `rows` of `source`, as a data source of their own."""

    def __init__(self, source: Any, rows: Sequence[int]):
        self.source, self.rows = source, np.asarray(rows, int)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Any:
        return self.source[int(self.rows[index])]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        rows = [int(self.rows[i]) for i in indices]
        getitems = getattr(self.source, "__getitems__", None)
        return list(getitems(rows)) if getitems else [self.source[r] for r in rows]


def strided_rows(source: Any, count: int) -> Rows:
    """`count` rows spread evenly over `source` (its files may be sorted by label)."""
    return Rows(source, np.unique(np.linspace(0, len(source) - 1,
                                              min(count, len(source))).astype(int)))


def calibration_images(config: Any, source: Any, count: int) -> list[np.ndarray]:
    """The same `count` unaugmented training images on every process (spread over the split),
    in the config's eval batches."""
    rows = strided_rows(source, count)
    return [batch["image"] for batch in input_lib.make_eval_batches(config, rows)]


def _each_batchnorm(visit: Any) -> Any:
    """A context in which every BatchNorm call first hands (module, input) to `visit`."""

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            visit(context.module, args[0])
        return next_fun(*args, **kwargs)

    return nn.intercept_methods(record)


def _batch_statistics(model: nn.Module, variables: dict[str, Any], images: jnp.ndarray
                      ) -> dict[Path, tuple[jnp.ndarray, jnp.ndarray]]:
    """{BatchNorm path: (mean, variance) of its input over this batch}, inference mode."""
    found: dict[Path, tuple[jnp.ndarray, jnp.ndarray]] = {}

    def visit(module: nn.BatchNorm, x: jnp.ndarray) -> None:
        x = jnp.asarray(x, jnp.float32)
        feature_axes = {a % x.ndim for a in np.atleast_1d(module.axis)}
        axes = tuple(a for a in range(x.ndim) if a not in feature_axes)
        found[tuple(module.path)] = (jnp.mean(x, axes), jnp.var(x, axes))

    with _each_batchnorm(visit):
        model.apply(variables, images, train=False)
    return found


def measure(model: nn.Module, variables: dict[str, Any], batches: Iterable[np.ndarray]
            ) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """Every BatchNorm's input mean and variance over all `batches` (uint8 NHWC images)."""
    step = jax.jit(lambda v, x: _batch_statistics(model, v, x))
    counts: list[int] = []
    per_batch = []
    for images in batches:
        per_batch.append(jax.device_get(step(variables, jnp.asarray(images))))
        counts.append(len(images))
    if not per_batch:
        raise ValueError("BatchNorm recalibration: no images to measure on")
    weights = np.asarray(counts, np.float64) / sum(counts)
    out = {}
    for path in per_batch[0]:
        means = np.stack([np.asarray(b[path][0], np.float64) for b in per_batch])
        variances = np.stack([np.asarray(b[path][1], np.float64) for b in per_batch])
        mean = np.tensordot(weights, means, 1)  # within-batch + between-batch variance
        var = np.tensordot(weights, variances + (means - mean) ** 2, 1)
        out[path] = (mean.astype(np.float32), var.astype(np.float32))
    return out


def _get(tree: Any, path: Path) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def refold(variables: dict[str, Any], statistics: dict[Path, tuple[np.ndarray, np.ndarray]],
           epsilons: dict[Path, float]) -> dict[str, Any]:
    """`variables` with each measured BatchNorm's statistics replaced and its scale and bias
    rescaled so that s'(x - mean)/sqrt(var + eps) + b' == s(x - m0)/sqrt(v0 + eps) + b."""
    params = jax.tree.map(np.asarray, variables["params"])
    stats = jax.tree.map(np.asarray, variables["batch_stats"])
    for path, (mean, var) in statistics.items():
        norm_params, norm_stats = _get(params, path), _get(stats, path)
        if "scale" not in norm_params or "bias" not in norm_params:
            raise ValueError(f"BatchNorm {'/'.join(path)}: recalibration needs its scale and "
                             "bias (use_scale and use_bias) to keep the function")
        eps = epsilons[path]
        old_std = np.sqrt(norm_stats["var"].astype(np.float64) + eps)
        scale = norm_params["scale"].astype(np.float64)
        new_scale = scale * np.sqrt(var.astype(np.float64) + eps) / old_std
        new_bias = norm_params["bias"] + scale * (mean - norm_stats["mean"]) / old_std
        dtype = norm_params["scale"].dtype
        norm_params["scale"] = new_scale.astype(dtype)
        norm_params["bias"] = new_bias.astype(norm_params["bias"].dtype)
        norm_stats["mean"] = mean.astype(norm_stats["mean"].dtype)
        norm_stats["var"] = var.astype(norm_stats["var"].dtype)
    return {**variables, "params": params, "batch_stats": stats}


def _epsilons(model: nn.Module, variables: dict[str, Any], image_shape: Sequence[int]
              ) -> dict[Path, float]:
    found: dict[Path, float] = {}

    def visit(module: nn.BatchNorm, x: jnp.ndarray) -> None:
        found[tuple(module.path)] = float(module.epsilon)

    with _each_batchnorm(visit):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, *image_shape), jnp.uint8),
                                             train=False), variables)
    return found


def recalibrate(model: nn.Module, variables: dict[str, Any], batches: Iterable[np.ndarray]
                ) -> dict[str, Any]:
    """`variables` ({"params", "batch_stats"}) with every BatchNorm measured on `batches`."""
    batches = list(batches)
    statistics = measure(model, variables, batches)
    out = refold(variables, statistics, _epsilons(model, variables, batches[0].shape[1:]))
    shift = max(float(np.max(np.abs(m - _get(variables["batch_stats"], p)["mean"])))
                for p, (m, _) in statistics.items())
    log.info("init.recalibrate_bn_images: %d BatchNorm layers measured on %d images "
             "(largest mean shift %.3g)", len(statistics), sum(len(b) for b in batches), shift)
    return out


def mode_gap(model: nn.Module, variables: dict[str, Any], images: np.ndarray,
             feature: str = "pre_logits") -> float:
    """Relative L2 distance between the training-mode and the inference-mode `feature` on
    `images`: how far a fine-tuning forward is from the net being fine-tuned."""
    (_, trained), _ = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.key(0)})  # fmt: skip
    _, inferred = model.apply(variables, images, train=False)
    a, b = np.asarray(inferred[feature]), np.asarray(trained[feature])
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def recalibrate_state(model: nn.Module, state: Any, batches: Iterable[np.ndarray]) -> Any:
    """A fresh TrainState (and its EMA copy) recalibrated on `batches`."""
    current = {"params": state.params, "batch_stats": state.batch_stats}
    out = recalibrate(model, current, batches)
    out = jax.tree.map(jnp.asarray, {"params": out["params"], "batch_stats": out["batch_stats"]})
    ema = dict(out) if state.ema is not None else None
    return state.replace(params=out["params"], batch_stats=out["batch_stats"], ema=ema)
