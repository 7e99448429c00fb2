"""Host-side metrics over per-example predictions (numpy), as users of this field read them."""

from __future__ import annotations

import numpy as np


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    return (
        float(np.mean(np.abs(np.asarray(pred, np.float64) - true))) if len(true) else float("nan")
    )


def cumulative_score(pred: np.ndarray, true: np.ndarray, k: float = 5.0) -> float:
    """CS@k: share of predictions within k years."""
    return (
        float(np.mean(np.abs(np.asarray(pred, np.float64) - true) <= k))
        if len(true)
        else float("nan")
    )


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(true))) if len(true) else float("nan")


def mean_baseline_mae(train_ages: np.ndarray, true: np.ndarray) -> float:
    """MAE of always predicting the training-set mean age (the reference an age model must beat)."""
    return mae(np.full_like(true, np.mean(train_ages), dtype=np.float64), true)


def summary(result: dict[str, np.ndarray]) -> dict[str, float]:
    """Headline metrics from `evaluation.predict` output."""
    age = result["age"]
    return {
        "n": int(len(age)),
        "loss": float(np.mean(result["loss"])) if len(age) else float("nan"),
        "age_mae": mae(result["age_pred"], age),
        "age_cs5": cumulative_score(result["age_pred"], age, 5.0),
        "gender_acc": accuracy(result["gender_pred"], result["gender"]),
        "race_acc": accuracy(result["race_pred"], result["race"]),
    }
