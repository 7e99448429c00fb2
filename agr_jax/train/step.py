"""The pure train and eval step bodies.

Written per device: with `axis_name` set they average gradients and metrics over that mesh
axis (the data-parallel wrappers in `parallel.py` supply it); without it they are plain
single-device functions. Nothing in here talks to the host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from agr_jax import tasks
from agr_jax.train.state import TrainState, eval_variables, update_ema

Batch = Mapping[str, jnp.ndarray]


def _pmean(tree: Any, axis_name: str | None) -> Any:
    return jax.lax.pmean(tree, axis_name) if axis_name else tree


def make_train_step(
    model: Any,
    tx: optax.GradientTransformation,
    spec: tasks.TaskSpec,
    axis_name: str | None = None,
    skip_nonfinite: bool = False,
    ema_decay: float = 0.0,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jnp.ndarray]]]:
    """`skip_nonfinite`: a step whose loss or gradient is NaN/Inf keeps the previous params,
    BN statistics and optimiser state (the step counter still advances); either way the
    metrics carry `nonfinite` (1.0 for such a step) for the host-side guard. `ema_decay`:
    decay of `state.ema` (updated after the step when the state has one)."""

    def train_step(state: TrainState, batch: Batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if axis_name:
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

        def loss_fn(params):
            (outputs, _), new_vars = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                batch["image"],
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": rng},
            )
            per_example = tasks.per_example_losses(outputs, batch, spec)
            task_losses = {t: jnp.mean(v) for t, v in per_example.items()}
            total = tasks.weighted_total(task_losses, spec, params.get("loss_log_vars"))
            return total, (task_losses, new_vars.get("batch_stats", {}), outputs)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (task_losses, batch_stats, outputs)), grads = grad_fn(state.params)
        grads = _pmean(grads, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        preds = tasks.predictions(outputs, spec)
        metrics = {
            "loss": loss,
            **{f"loss_{t}": v for t, v in task_losses.items()},
            "age_mae": jnp.mean(jnp.abs(preds["age"] - batch["age"])),
            "gender_acc": jnp.mean((preds["gender"] == batch["gender"]).astype(jnp.float32)),
            "race_acc": jnp.mean((preds["race"] == batch["race"]).astype(jnp.float32)),
            "grad_norm": optax.global_norm(grads),
            **{f"task_weight_{t}": jnp.exp(-s) for t, s in params.get("loss_log_vars", {}).items()},
        }
        metrics = _pmean(metrics, axis_name)
        finite = jnp.isfinite(metrics["grad_norm"])
        for t in task_losses:
            finite &= jnp.isfinite(metrics[f"loss_{t}"])
        metrics["nonfinite"] = 1.0 - finite.astype(jnp.float32)
        if skip_nonfinite:
            keep_new = lambda new, old: jax.tree.map(
                lambda n, o: jnp.where(finite, n, o), new, old
            )
            params = keep_new(params, state.params)
            batch_stats = keep_new(batch_stats, state.batch_stats)
            opt_state = keep_new(opt_state, state.opt_state)
        new_state = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)
        new_state = update_ema(new_state, ema_decay).replace(step=state.step + 1)
        return new_state, metrics

    return train_step


def make_eval_step(
    model: Any, spec: tasks.TaskSpec
) -> Callable[[TrainState, Batch], dict[str, jnp.ndarray]]:
    """Per-example predictions and losses (host code masks padding and aggregates)."""

    def eval_step(state: TrainState, batch: Batch):
        variables = eval_variables(state)
        outputs, _ = model.apply(variables, batch["image"], train=False)
        losses = tasks.per_example_losses(outputs, batch, spec)
        preds = tasks.predictions(outputs, spec)
        return {
            "age_pred": preds["age"],
            "gender_pred": preds["gender"],
            "race_pred": preds["race"],
            "gender_prob": preds["gender_prob"],
            "race_prob": preds["race_prob"],
            "loss": tasks.weighted_total(losses, spec, variables["params"].get("loss_log_vars")),
            **{f"loss_{t}": v for t, v in losses.items()},
        }

    return eval_step
