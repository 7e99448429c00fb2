"""Task definitions: output widths, losses and decoding to human units (years, classes).

Age is regression on age/max_age through a sigmoid with an MSE loss (the walking-skeleton
mode); gender and race are softmax classifiers. Losses are float32 whatever the compute dtype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

TASKS = ("age", "gender", "race")
AGE_MODES = ("regression",)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    age_mode: str = "regression"
    max_age: float = 116.0
    num_genders: int = 2
    num_races: int = 5
    weights: tuple[tuple[str, float], ...] = (("age", 1.0), ("gender", 1.0), ("race", 1.0))

    def __post_init__(self):
        if self.age_mode not in AGE_MODES:
            raise ValueError(f"tasks.age_mode: expected one of {AGE_MODES}, got {self.age_mode!r}")
        if self.max_age <= 0:
            raise ValueError(f"tasks.max_age: expected > 0, got {self.max_age}")
        unknown = set(dict(self.weights)) - set(TASKS)
        if unknown:
            raise ValueError(f"tasks.weights: unknown tasks {sorted(unknown)}; expected {TASKS}")

    @property
    def weight(self) -> dict[str, float]:
        return dict(self.weights)

    def output_sizes(self) -> dict[str, int]:
        return {"age": 1, "gender": self.num_genders, "race": self.num_races}

    @classmethod
    def from_config(cls, tasks_config: Mapping[str, Any], num_races: int = 5) -> TaskSpec:
        weights = dict(tasks_config.get("weights", {}))
        return cls(
            age_mode=tasks_config.get("age_mode", "regression"),
            max_age=float(tasks_config.get("max_age", 116.0)),
            num_races=num_races,
            weights=tuple((t, float(weights.get(t, 1.0))) for t in TASKS),
        )


def age_years(age_logits: jnp.ndarray, spec: TaskSpec) -> jnp.ndarray:
    """Decode age outputs to years, whatever the mode."""
    return jax.nn.sigmoid(age_logits[..., 0].astype(jnp.float32)) * spec.max_age


def per_example_losses(
    outputs: Mapping[str, jnp.ndarray], batch: Mapping[str, jnp.ndarray], spec: TaskSpec
) -> dict[str, jnp.ndarray]:
    """Per-example float32 losses for every task; shape [B] each."""
    target_age = batch["age"].astype(jnp.float32) / spec.max_age
    pred_age = jax.nn.sigmoid(outputs["age"][..., 0].astype(jnp.float32))
    return {
        "age": jnp.square(pred_age - target_age),
        "gender": optax.softmax_cross_entropy_with_integer_labels(
            outputs["gender"].astype(jnp.float32), batch["gender"]
        ),
        # race -1 = not labelled (IMDB-WIKI): no loss.
        "race": optax.softmax_cross_entropy_with_integer_labels(
            outputs["race"].astype(jnp.float32), jnp.maximum(batch["race"], 0)
        )
        * (batch["race"] >= 0),
    }


def weighted_total(task_losses: Mapping[str, jnp.ndarray], spec: TaskSpec) -> jnp.ndarray:
    w = spec.weight
    return sum(w[t] * task_losses[t] for t in TASKS)


def predictions(outputs: Mapping[str, jnp.ndarray], spec: TaskSpec) -> dict[str, jnp.ndarray]:
    """Human-unit predictions: age in years, gender and race class ids (+ probabilities)."""
    gender_p = jax.nn.softmax(outputs["gender"].astype(jnp.float32))
    race_p = jax.nn.softmax(outputs["race"].astype(jnp.float32))
    return {
        "age": age_years(outputs["age"], spec),
        "gender": jnp.argmax(gender_p, -1),
        "race": jnp.argmax(race_p, -1),
        "gender_prob": gender_p,
        "race_prob": race_p,
    }
