"""Task definitions: output widths, losses, task weighting and decoding to human units.

Age modes, all decoded to years so age MAE compares across modes:
- `regression`: sigmoid(logit) * max_age; MSE (`tasks.age_loss="mse"`) or L1 (`"l1"`, the
  loss of the metric users read, MAE, and robust to the odd mislabelled age) on age/max_age.
- `bins`: softmax over K age bins (edges from `tasks.age_bins`), cross-entropy; decoded as the
  expected value of the bin centres.
- `ordinal`: K-1 rank-consistent binary outputs "age bin > k" (CORAL, Cao et al. 2020),
  binary cross-entropy; decoded as the centre of bin #(P > 0.5).
Gender and race are softmax classifiers. Task weighting is fixed (`tasks.weights`) or learned
(uncertainty weighting, Kendall et al. 2018: sum_t w_t exp(-s_t) L_t + s_t with trainable s_t).
Losses are float32 whatever the compute dtype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

TASKS = ("age", "gender", "race")
AGE_MODES = ("regression", "bins", "ordinal")
REGRESSION_LOSSES = ("mse", "l1")
WEIGHTINGS = ("fixed", "learned")

# Age-bin edges (integer years): bin i holds ages e_i .. e_{i+1} - 1; None = max_age + 1 ("62+").
AGE_BIN_PRESETS: dict[str, tuple[float | None, ...]] = {
    # 1-5, 6-12, 13-19, 20-26, 27-34, 35-42, 43-49, 50-61, 62+
    "utkface9": (1, 6, 13, 20, 27, 35, 43, 50, 62, None),
    # 0-30, 31-45, 46-60, 61-100
    "intervals4": (0, 31, 46, 61, 101),
    # FairFace: 0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, 70+
    "fairface9": (0, 3, 10, 20, 30, 40, 50, 60, 70, None),
}
FIVE_YEAR = "5year"  # 0-4, 5-9, ... up to max_age


def resolve_age_edges(age_bins: Any, max_age: float) -> tuple[float, ...]:
    """`tasks.age_bins` (a preset name or K+1 increasing edges) -> K+1 float edges."""
    if isinstance(age_bins, str):
        if age_bins == FIVE_YEAR:
            edges: tuple[Any, ...] = (*range(0, int(max_age) + 1, 5), None)
        elif age_bins in AGE_BIN_PRESETS:
            edges = AGE_BIN_PRESETS[age_bins]
        else:
            raise ValueError(
                f"tasks.age_bins: unknown preset {age_bins!r}; expected one of "
                f"{sorted([*AGE_BIN_PRESETS, FIVE_YEAR])} or a sequence of edges"
            )
    else:
        edges = tuple(age_bins)
    resolved = tuple(float(max_age) + 1 if e is None else float(e) for e in edges)
    if len(resolved) < 3 or any(b <= a for a, b in zip(resolved, resolved[1:], strict=False)):
        raise ValueError(
            f"tasks.age_bins: expected at least 3 strictly increasing edges (2 bins), "
            f"got {age_bins!r}"
        )
    return resolved


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    age_mode: str = "regression"
    max_age: float = 116.0
    num_genders: int = 2
    num_races: int = 5
    weights: tuple[tuple[str, float], ...] = (("age", 1.0), ("gender", 1.0), ("race", 1.0))
    weighting: str = "fixed"
    age_edges: tuple[float, ...] = ()  # K+1 edges in years, for the bins and ordinal modes
    age_loss: str = "mse"  # regression mode: "mse" or "l1" on age/max_age
    label_smoothing: float = 0.0  # gender and race cross-entropy targets: (1-e) one-hot + e/K

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"tasks.label_smoothing: expected 0 <= value < 1, got {self.label_smoothing}"
            )
        if self.age_mode not in AGE_MODES:
            raise ValueError(f"tasks.age_mode: expected one of {AGE_MODES}, got {self.age_mode!r}")
        if self.age_loss not in REGRESSION_LOSSES:
            raise ValueError(
                f"tasks.age_loss: expected one of {REGRESSION_LOSSES}, got {self.age_loss!r}"
            )
        if self.age_mode != "regression" and self.age_loss != "mse":
            raise ValueError(
                f"tasks.age_loss: {self.age_loss!r} applies to age_mode 'regression' only "
                f"(age_mode {self.age_mode!r} trains with cross-entropy)"
            )
        if self.age_mode != "regression" and len(self.age_edges) < 3:
            raise ValueError(
                f"tasks.age_bins: age_mode {self.age_mode!r} needs age-bin edges "
                f"(a preset such as 'utkface9' or K+1 increasing edges)"
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"tasks.weighting: expected one of {WEIGHTINGS}, got {self.weighting!r}"
            )
        if self.max_age <= 0:
            raise ValueError(f"tasks.max_age: expected > 0, got {self.max_age}")
        unknown = set(dict(self.weights)) - set(TASKS)
        if unknown:
            raise ValueError(f"tasks.weights: unknown tasks {sorted(unknown)}; expected {TASKS}")

    @property
    def weight(self) -> dict[str, float]:
        return dict(self.weights)

    @property
    def num_age_bins(self) -> int:
        return len(self.age_edges) - 1

    def age_bin_centres(self) -> jnp.ndarray:
        """Centre of each bin in years (integer ages e_i .. e_{i+1} - 1)."""
        edges = jnp.asarray(self.age_edges, jnp.float32)
        return (edges[:-1] + edges[1:] - 1.0) / 2.0

    def output_sizes(self) -> dict[str, int]:
        age = {"regression": 1, "bins": self.num_age_bins, "ordinal": self.num_age_bins - 1}
        return {"age": age[self.age_mode], "gender": self.num_genders, "race": self.num_races}

    def model_options(self) -> dict[str, tuple[str, ...]]:
        """Head options the tasks imply (keywords of `models.build`)."""
        return {
            "rank_consistent_tasks": ("age",) if self.age_mode == "ordinal" else (),
            "learned_loss_weights": TASKS if self.weighting == "learned" else (),
        }

    @classmethod
    def from_config(cls, tasks_config: Mapping[str, Any], num_races: int = 5) -> TaskSpec:
        weights = dict(tasks_config.get("weights", {}))
        max_age = float(tasks_config.get("max_age", 116.0))
        age_mode = tasks_config.get("age_mode", "regression")
        age_bins = tasks_config.get("age_bins", None)
        if age_mode != "regression" and age_bins in (None, "", ()):
            raise ValueError(
                f"tasks.age_bins: age_mode {age_mode!r} needs age-bin edges; set it to a preset "
                f"{sorted([*AGE_BIN_PRESETS, FIVE_YEAR])} or K+1 increasing edges in years"
            )
        return cls(
            age_mode=age_mode,
            max_age=max_age,
            num_races=num_races,
            weights=tuple((t, float(weights.get(t, 1.0))) for t in TASKS),
            weighting=tasks_config.get("weighting", "fixed"),
            age_edges=resolve_age_edges(age_bins, max_age) if age_bins not in (None, "") else (),
            age_loss=tasks_config.get("age_loss", "mse"),
            label_smoothing=float(tasks_config.get("label_smoothing", 0.0)),
        )


def age_bin_labels(age: jnp.ndarray, spec: TaskSpec) -> jnp.ndarray:
    """Ages in years -> bin index in [0, K); ages outside the edges go to the end bins."""
    inner = jnp.asarray(spec.age_edges[1:-1], jnp.float32)
    return jnp.searchsorted(inner, age.astype(jnp.float32), side="right").astype(jnp.int32)


def age_years(age_logits: jnp.ndarray, spec: TaskSpec) -> jnp.ndarray:
    """Decode age outputs to years, whatever the mode."""
    logits = age_logits.astype(jnp.float32)
    if spec.age_mode == "bins":
        return jax.nn.softmax(logits) @ spec.age_bin_centres()
    if spec.age_mode == "ordinal":
        rank = jnp.sum(jax.nn.sigmoid(logits) > 0.5, axis=-1)
        return spec.age_bin_centres()[rank]
    return jax.nn.sigmoid(logits[..., 0]) * spec.max_age


def age_loss(age_logits: jnp.ndarray, age: jnp.ndarray, spec: TaskSpec) -> jnp.ndarray:
    """Per-example float32 age loss for the spec's age mode."""
    logits = age_logits.astype(jnp.float32)
    if spec.age_mode == "bins":
        return optax.softmax_cross_entropy_with_integer_labels(logits, age_bin_labels(age, spec))
    if spec.age_mode == "ordinal":
        # Level k is "bin > k". CORAL sums over levels; the mean keeps the loss on the scale
        # of the other tasks whatever K is.
        levels = jnp.arange(spec.num_age_bins - 1)
        targets = (age_bin_labels(age, spec)[:, None] > levels).astype(jnp.float32)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)
    error = jax.nn.sigmoid(logits[..., 0]) - age.astype(jnp.float32) / spec.max_age
    return jnp.abs(error) if spec.age_loss == "l1" else jnp.square(error)


def class_loss(logits: jnp.ndarray, labels: jnp.ndarray, smoothing: float) -> jnp.ndarray:
    """Cross-entropy against one-hot targets mixed with the uniform distribution."""
    logits = logits.astype(jnp.float32)
    if not smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def per_example_losses(
    outputs: Mapping[str, jnp.ndarray], batch: Mapping[str, jnp.ndarray], spec: TaskSpec
) -> dict[str, jnp.ndarray]:
    """Per-example float32 losses for every task; shape [B] each."""
    smoothing = spec.label_smoothing
    return {
        "age": age_loss(outputs["age"], batch["age"], spec),
        "gender": class_loss(outputs["gender"], batch["gender"], smoothing),
        # race -1 = not labelled (IMDB-WIKI): no loss.
        "race": class_loss(outputs["race"], jnp.maximum(batch["race"], 0), smoothing)
        * (batch["race"] >= 0),
    }


def weighted_total(
    task_losses: Mapping[str, jnp.ndarray],
    spec: TaskSpec,
    log_vars: Mapping[str, jnp.ndarray] | None = None,
) -> jnp.ndarray:
    """Fixed: sum_t w_t L_t. Learned: sum_t w_t exp(-s_t) L_t + s_t, s_t = `log_vars[t]`
    (the model's `params["loss_log_vars"]`), trained with the rest of the parameters."""
    w = spec.weight
    if spec.weighting == "fixed":
        return sum(w[t] * task_losses[t] for t in TASKS)
    if log_vars is None:
        raise ValueError(
            "tasks.weighting='learned' needs the model's params['loss_log_vars']; build the "
            "model with TaskSpec.model_options()"
        )
    return sum(w[t] * jnp.exp(-log_vars[t]) * task_losses[t] + log_vars[t] for t in TASKS)


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
