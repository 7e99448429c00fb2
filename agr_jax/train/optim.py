"""Optax optimiser and learning-rate schedule from `config.optimizer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def make_optimizer(cfg: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """Build the optimiser; gradient clipping and weight decay are config switches."""
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
    if float(cfg.get("grad_clip", 0.0)) > 0:
        chain.append(optax.clip_by_global_norm(float(cfg["grad_clip"])))
    if wd > 0 and name != "adamw":
        chain.append(optax.add_decayed_weights(wd))
    return optax.chain(*chain, tx) if chain else tx
