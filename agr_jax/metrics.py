"""Host-side metrics over per-example predictions (numpy), as users of this field read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    has_race = result["race"] >= 0  # -1: no race label (IMDB-WIKI)
    return {
        "n": int(len(age)),
        "loss": float(np.mean(result["loss"])) if len(age) else float("nan"),
        "age_mae": mae(result["age_pred"], age),
        "age_cs5": cumulative_score(result["age_pred"], age, 5.0),
        "gender_acc": accuracy(result["gender_pred"], result["gender"]),
        "race_acc": accuracy(result["race_pred"][has_race], result["race"][has_race]),
    }


# --- Full report: per-class scores, confusion, age bins and decades, fairness gaps ----------

# Lower edges of the default age bins 1-5, 6-12, 13-19, 20-26, 27-34, 35-42, 43-49, 50-61, 62+.
DEFAULT_AGE_BIN_EDGES = (1, 6, 13, 20, 27, 35, 43, 50, 62)
CORAL_AGE_RANGE = (21, 60)


def age_bin_labels(edges: Sequence[int]) -> list[str]:
    """Human labels for bins given by their lower edges: "1-5", ..., "62+"."""
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)] + [
        f"{edges[-1]}+"
    ]


def age_bin_index(ages: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Bin of each age (rounded to whole years; ages under the first edge go to bin 0)."""
    years = np.rint(np.asarray(ages, np.float64))
    return np.clip(np.searchsorted(np.asarray(edges), years, side="right") - 1, 0, len(edges) - 1)


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    out = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(out, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return out


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined, as sklearn does)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_report(
    pred: np.ndarray, true: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in `true`), per-class scores, confusion."""
    conf = confusion_matrix(pred, true, len(names))
    scores = per_class_scores(conf)
    present = scores["support"] > 0
    return {
        "accuracy": accuracy(pred, true),
        "macro_f1": float(np.mean(scores["f1"][present])) if present.any() else float("nan"),
        "per_class": {
            name: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, name in enumerate(names)
        },
        "confusion": conf.tolist(),
        "names": list(names),
    }


def mae_by_decade(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    """MAE per true-age decade ("0-9", "10-19", ...), only decades present."""
    decade = (np.asarray(true) // 10).astype(int)
    return {
        f"{d * 10}-{d * 10 + 9}": {
            "n": int(np.sum(decade == d)),
            "age_mae": mae(pred[decade == d], true[decade == d]),
        }
        for d in np.unique(decade)
    }


AGE_BANDS = {"under 20": (0, 20), "60 and over": (60, 1_000)}  # where users notice errors


def mae_by_band(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    """MAE of the children and teenagers, and of the elderly (`AGE_BANDS`, true age)."""
    true = np.asarray(true)
    out = {}
    for name, (lo, hi) in AGE_BANDS.items():
        at = (true >= lo) & (true < hi)
        if at.any():
            out[name] = {"n": int(at.sum()), "age_mae": mae(np.asarray(pred)[at], true[at])}
    return out


def headline(
    result: Mapping[str, np.ndarray],
    edges: Sequence[int],
    num_genders: int,
    num_races: int,
) -> dict[str, float]:
    """The scalar metrics that are also reported per group."""
    age, pred = result["age"], result["age_pred"]
    has_race = result["race"] >= 0  # IMDB-WIKI has no race labels (-1)
    race_true, race_pred = result["race"][has_race], result["race_pred"][has_race]
    gender = classification_report(result["gender_pred"], result["gender"], range(num_genders))
    race = classification_report(race_pred, race_true, range(num_races))
    return {
        "n": int(len(age)),
        "age_mae": mae(pred, age),
        "age_cs5": cumulative_score(pred, age, 5.0),
        "age_bin_acc": accuracy(age_bin_index(pred, edges), age_bin_index(age, edges)),
        "gender_acc": gender["accuracy"],
        "gender_macro_f1": gender["macro_f1"],
        "race_acc": race["accuracy"],
        "race_macro_f1": race["macro_f1"],
    }


def subset(result: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[mask] for k, v in result.items()}


def by_group(
    result: Mapping[str, np.ndarray],
    key: str,
    names: Sequence[str],
    edges: Sequence[int],
    num_genders: int,
    num_races: int,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Headline metrics per value of `key` (e.g. race), and each metric's max-min gap over
    the groups present."""
    groups = {
        name: headline(subset(result, result[key] == i), edges, num_genders, num_races)
        for i, name in enumerate(names)
        if np.any(result[key] == i)
    }
    gaps = {}
    for metric in next(iter(groups.values()), {}):
        if metric == "n":
            continue
        values = [g[metric] for g in groups.values() if np.isfinite(g[metric])]
        gaps[metric] = float(max(values) - min(values)) if len(values) > 1 else float("nan")
    return groups, gaps


def full_report(
    result: Mapping[str, np.ndarray],
    gender_names: Sequence[str],
    race_names: Sequence[str],
    edges: Sequence[int] = DEFAULT_AGE_BIN_EDGES,
    coral_range: tuple[int, int] = CORAL_AGE_RANGE,
) -> dict[str, Any]:
    """Everything the evaluation report shows, JSON-ready (headline keys at the top level)."""
    ng, nr = len(gender_names), len(race_names)
    has_race = result["race"] >= 0
    age_bins_true = age_bin_index(result["age"], edges)
    age_bins_pred = age_bin_index(result["age_pred"], edges)
    report: dict[str, Any] = {**summary(result), **headline(result, edges, ng, nr)}
    by_race, race_gaps = by_group(result, "race", race_names, edges, ng, nr)
    by_gender, gender_gaps = by_group(result, "gender", gender_names, edges, ng, nr)
    lo, hi = coral_range
    in_coral = (result["age"] >= lo) & (result["age"] <= hi)
    report.update(
        age_bin_edges=list(edges),
        age_bins=classification_report(age_bins_pred, age_bins_true, age_bin_labels(edges)),
        gender=classification_report(result["gender_pred"], result["gender"], gender_names),
        race=classification_report(
            result["race_pred"][has_race], result["race"][has_race], race_names
        ),
        mae_by_decade=mae_by_decade(result["age_pred"], result["age"]),
        mae_by_band=mae_by_band(result["age_pred"], result["age"]),
        by_race=by_race,
        by_gender=by_gender,
        gaps={"race": race_gaps, "gender": gender_gaps},
        coral={
            "age_range": [lo, hi],
            **headline(subset(result, in_coral), edges, ng, nr),
        },
    )
    return report
