"""Optax optimiser and learning-rate schedule from `config.optimizer`.

`optimizer.lr_multipliers` maps parameter-path globs to learning-rate multipliers, e.g.
`(("backbone/*", 0.01), ("head/race/*", 0.1), ("head/gender/*", 0.1))`. Paths are the params
tree keys joined by "/" ("backbone/stage1_block1/conv1/kernel", "head/age/logits/bias",
"loss_log_vars/age"); the first matching glob wins, unmatched parameters keep x1. A multiplier
of 0 freezes the parameters: `optax.set_to_zero()`, so no optimiser state is allocated for them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax
from absl import logging

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


def make_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    lr = float(cfg["learning_rate"])
    name = cfg.get("schedule", "cosine")
    warmup = int(cfg.get("warmup_steps", 0))
    if warmup < 0:
        raise ValueError(f"optimizer.warmup_steps: expected >= 0, got {warmup}")
    if warmup and warmup >= total_steps // 2:
        logging.warning(
            "optimizer.warmup_steps=%d is over half of the %d total steps; using %d",
            warmup,
            total_steps,
            total_steps // 2,
        )
        warmup = total_steps // 2
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=lr * 0.01 if warmup else lr,
            peak_value=lr,
            warmup_steps=warmup,
            decay_steps=max(total_steps, 1),
            end_value=lr * float(cfg.get("final_lr_fraction", 0.0)),
        )
    if name == "onecycle":
        return optax.cosine_onecycle_schedule(
            transition_steps=max(total_steps, 1),
            peak_value=lr,
            pct_start=float(cfg.get("pct_start", 0.25)),
        )
    raise ValueError(f"optimizer.schedule: expected one of {SCHEDULES}, got {name!r}")


def param_path(path: Sequence[Any]) -> str:
    """A params-tree key path as "backbone/stage1_block1/conv1/kernel"."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def parse_lr_multipliers(spec: Any) -> tuple[tuple[str, float], ...]:
    """`optimizer.lr_multipliers` (pairs or a mapping of glob -> multiplier), checked."""
    pairs = list(spec.items()) if isinstance(spec, Mapping) else list(spec or ())
    out = []
    for item in pairs:
        if len(item) != 2 or not isinstance(item[0], str):
            raise ValueError(
                f"optimizer.lr_multipliers: expected (glob, multiplier) pairs, got {item!r}"
            )
        mult = float(item[1])
        if mult < 0:
            raise ValueError(f"optimizer.lr_multipliers: multiplier for {item[0]!r} is < 0")
        out.append((item[0], mult))
    return tuple(out)


def lr_multiplier_labels(multipliers: Sequence[tuple[str, float]]):
    """params -> tree of labels "x<multiplier>" (first matching glob, else x1.0)."""

    def label(path: Sequence[Any], _leaf: Any) -> str:
        name = param_path(path)
        for pattern, mult in multipliers:
            if fnmatch.fnmatchcase(name, pattern):
                return f"x{mult}"
        return "x1.0"

    return lambda params: jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """Build the optimiser; clipping, weight decay and per-submodule LRs are config switches."""
    multipliers = parse_lr_multipliers(cfg.get("lr_multipliers", ()))
    if not multipliers:
        return _base_optimizer(cfg, total_steps, clip=True)
    base = _base_optimizer(cfg, total_steps, clip=False)
    transforms = {"x1.0": base}
    for _, mult in multipliers:
        label = f"x{mult}"
        if label not in transforms:
            scaled = optax.chain(base, optax.scale(mult))
            transforms[label] = optax.set_to_zero() if mult == 0 else scaled
    tx = optax.multi_transform(transforms, lr_multiplier_labels(multipliers))
    # Clip the global norm once, over all gradients (frozen ones included), before the split.
    if float(cfg.get("grad_clip", 0.0)) > 0:
        return optax.chain(optax.clip_by_global_norm(float(cfg["grad_clip"])), tx)
    return tx


def _base_optimizer(
    cfg: Mapping[str, Any], total_steps: int, clip: bool
) -> optax.GradientTransformation:
    schedule = make_schedule(cfg, total_steps)
    name = cfg.get("name", "adam")
    wd = float(cfg.get("weight_decay", 0.0))
    momentum = float(cfg.get("momentum", 0.9))
    if name == "adam":
        tx = optax.adam(schedule)
    elif name == "adamw":
        tx = optax.adamw(schedule, weight_decay=wd)
    elif name == "rmsprop":
        tx = optax.rmsprop(schedule, decay=0.9, momentum=momentum, eps=1e-7)
    elif name == "sgd":
        tx = optax.sgd(schedule, momentum=momentum, nesterov=bool(cfg.get("nesterov", True)))
    else:
        raise ValueError(f"optimizer.name: expected one of {OPTIMIZERS}, got {name!r}")
    chain = []
    if clip and float(cfg.get("grad_clip", 0.0)) > 0:
        chain.append(optax.clip_by_global_norm(float(cfg["grad_clip"])))
    if wd > 0 and name != "adamw":
        chain.append(optax.add_decayed_weights(wd))
    return optax.chain(*chain, tx) if chain else tx
