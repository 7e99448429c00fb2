"""Calibration fitted on the validation split, applied at prediction time.

- Gender and race: one softmax temperature each, fitted by minimising the negative
  log-likelihood (temperature scaling, Guo et al. 2017). The model's probabilities p give
  logits log p up to a constant, so no raw logits are needed. Reported as expected
  calibration error (ECE, 15 equal-width confidence bins) before and after.
- Age: a 90 % interval by group-conditional (Mondrian) split conformal prediction
  (Vovk et al. 2005; normalised scores as in Papadopoulos et al. 2008). The validation faces
  are dealt (seeded) into two disjoint halves:
  1. *Shape* half: per predicted-age group (equal counts, >= `MIN_SHAPE_GROUP` faces), the
     residual (true - pred) quantiles at 5 % and 95 %, each face weighted by (faces of its
     true-age decade, at least `DECADE_FLOOR`) ** -`DECADE_POWER`: a model pulls rare ages
     (teens, the elderly) towards common ones, so those faces sit in the tails of the groups
     they are predicted into, and the weighting gives those tails more than their share.
     Each group's offsets are clipped to `MAX_SPREAD` times the pooled (unweighted) offsets
     of the half and kept on their side of the group's median residual, so one heavily
     weighted face cannot make a group absurdly wide (the fast release's s29 group 18.4-23.7
     had +45 years).
  2. *Calibration* half: the signed score (residual - centre) / half-width of the face's
     shape group; adjacent shape groups are merged into Mondrian groups of at least
     `MIN_GROUP` calibration faces, and in each the upper bound is set by the
     ceil((n + 1) 0.95)-th smallest of its n scores, the lower by that of the negated scores
     (each tail calibrated on its own, so a group cannot over-cover one side to excuse the
     other).
  The guarantee (exchangeable faces; the shape is fixed before the calibration half is read):
  a new face whose prediction falls in a Mondrian group lies above its upper bound with
  probability at most 0.05, below its lower bound at most 0.05, so it is covered with
  probability at least 0.9 (at most 0.9 + 2 / (n + 1) without ties), and so overall. (A
  group of fewer than 19 faces, on a tiny validation split, takes its largest score and loses
  the guarantee.) Nothing is guaranteed per *true*-age decade (the true age is unknown at
  prediction time): the weighted shape only aims at it; model cards report it measured on the
  test split.
  Widening keeps the guarantee, so every interval is widened to contain its prediction.
  Chosen by 5-fold cross-validation within the validation split (4 repeats; the test split
  read only to report): against one symmetric score per group and decade weight 1, the
  per-tail scores, `DECADE_POWER` 1.5 and `DECADE_FLOOR` 30 raised the least covered decade
  with >= 100 faces from 0.78 to 0.82 (default release; fast: 0.80 to 0.84) at -0.5 / -1.6
  years of mean width; smaller Mondrian groups (100) lowered it (0.73 / 0.75); without the
  floor one centenarian made a full fit's oldest groups 50 years wide.
  Why no library: `crepes` (ConformalRegressor with bins= and sigmas=) would compute step 2
  but brings pandas into the install, and has no decade-weighted asymmetric shape; MAPIE needs
  scikit-learn. Step 2 is `conformal_quantile` per group, a dozen lines.
  The same method serves every age mode (regression, bins, ordinal): it needs only the
  decoded age in years. The result keeps the offsets-per-predicted-age-group form that the
  predictor, the ONNX export and the service apply (`age_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

LEVEL = 0.9
ECE_BINS = 15
DECADE_POWER = 1.5  # a face's shape weight: (faces of its true-age decade) ** -DECADE_POWER
DECADE_FLOOR = 30  # ... counting a decade as at least this many faces
MIN_SHAPE_GROUP = 100  # shape-half faces per predicted-age group of the shape
MAX_SHAPE_GROUPS = 12
MIN_GROUP = 250  # calibration-half faces per Mondrian group (adjacent groups merged below)
MAX_SPREAD = 2.0  # a shape group's offsets at most this times the half's pooled offsets
MIN_HALF_WIDTH = 0.5  # years: the least half-width a group is scaled from (a degenerate shape)
SPLIT_SEED = 0
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))


def scaled_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the temperature applied to a model's probabilities."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature with the lowest NLL on (probs, labels), over a fine log grid."""
    labels = np.asarray(labels)
    keep = labels >= 0  # unlabelled races (-1) carry no information
    if not keep.any():
        return 1.0
    probs, labels = np.asarray(probs)[keep], labels[keep]
    losses = [nll(scaled_probs(probs, t), labels) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| x
    share of faces (unlabelled rows, label -1, left out)."""
    labels = np.asarray(labels)
    keep = labels >= 0
    probs, labels = np.asarray(probs)[keep], labels[keep]
    if not len(labels):
        return float("nan")
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def conformal_quantile(values: np.ndarray, q: float) -> float:
    """The finite-sample conformal quantile: the ceil((n + 1) q)-th smallest value."""
    values = np.sort(np.asarray(values, np.float64))
    k = min(max(math.ceil((len(values) + 1) * q), 1), len(values))
    return float(values[k - 1])


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose weighted cumulative share reaches q."""
    order = np.argsort(values)
    values, weights = np.asarray(values, np.float64)[order], np.asarray(weights)[order]
    share = np.cumsum(weights) / weights.sum()
    return float(values[min(int(np.searchsorted(share, q - 1e-12)), len(values) - 1)])


def decade_weights(true: np.ndarray, power: float = DECADE_POWER,
                   floor: int = DECADE_FLOOR) -> np.ndarray:
    """max(faces of the same true-age decade, floor) ** -power: with power 1 every decade
    weighs the same, above 1 rare decades weigh more; the floor keeps a decade of one or
    two faces (a centenarian) from outweighing a whole group."""
    decade = (np.asarray(true) // 10).astype(int)
    _, inverse, counts = np.unique(decade, return_inverse=True, return_counts=True)
    return np.maximum(counts[inverse], floor).astype(np.float64) ** -power


def halves(n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """True for the shape half, False for the calibration half: the first n // 2 faces of a
    seeded shuffle (the calibration half gets the odd face)."""
    shape = np.zeros(n, bool)
    shape[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return shape


def equal_count_edges(pred: np.ndarray, min_size: int, max_groups: int) -> np.ndarray:
    """Predicted-age edges of groups of equal counts, each >= `min_size` faces."""
    groups = int(np.clip(len(pred) // max(min_size, 1), 1, max_groups))
    return np.quantile(pred, np.linspace(0, 1, groups + 1))[1:-1]


def shape_quantiles(pred: np.ndarray, true: np.ndarray, level: float = LEVEL
                    ) -> dict[str, Any]:
    """Per predicted-age group, the decade-weighted residual (true - pred) quantiles at
    (1 - level) / 2 and (1 + level) / 2, clipped to `MAX_SPREAD` times the pooled unweighted
    ones and kept on their side of the group's median residual (`edges`: the groups'
    predicted-age boundaries)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    edges = equal_count_edges(pred, MIN_SHAPE_GROUP, MAX_SHAPE_GROUPS)
    group = np.searchsorted(edges, pred, side="right")
    residual, weights = true - pred, decade_weights(true)
    tail = (1 + level) / 2
    pooled_low = min(float(np.quantile(residual, 1 - tail)), -MIN_HALF_WIDTH)
    pooled_high = max(float(np.quantile(residual, tail)), MIN_HALF_WIDTH)
    low, high = [], []
    for g in range(len(edges) + 1):
        inside = group == g if (group == g).any() else np.ones_like(group, bool)
        r, w = residual[inside], weights[inside]
        middle = float(np.median(r))  # a face outweighing the rest moves no bound past it
        low.append(min(max(-weighted_quantile(-r, w, tail), MAX_SPREAD * pooled_low), middle))
        high.append(max(min(weighted_quantile(r, w, tail), MAX_SPREAD * pooled_high), middle))
    return {"edges": edges.tolist(), "low": low, "high": high}


def centre_and_half(shape: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.asarray(shape["low"], np.float64), np.asarray(shape["high"], np.float64)
    return (low + high) / 2, np.maximum((high - low) / 2, MIN_HALF_WIDTH)


def group_of(edges: Any, pred: np.ndarray) -> np.ndarray:
    """The group index of each predicted age (group g: edges[g - 1] <= pred < edges[g])."""
    return np.searchsorted(np.asarray(edges, np.float64), pred, side="right")


def interval_scores(shape: Mapping[str, Any], pred: np.ndarray, true: np.ndarray
                    ) -> np.ndarray:
    """(residual - group centre) / group half-width: the bounds centre + u * half and
    centre - l * half cover a face exactly when -l <= score <= u."""
    centre, half = centre_and_half(shape)
    group = group_of(shape["edges"], pred)
    return (true - pred - centre[group]) / half[group]


def merge_groups(counts: np.ndarray, min_size: int) -> np.ndarray:
    """Mondrian group per shape group: adjacent shape groups merged, in order, until each
    holds >= `min_size` faces (a short remainder joins the last full group)."""
    mondrian, current, held = np.zeros(len(counts), int), 0, 0
    for g, count in enumerate(counts):
        if held >= min_size and counts[g:].sum() >= min_size:
            current, held = current + 1, 0
        mondrian[g], held = current, held + count
    return mondrian


def fit_age_interval(pred: np.ndarray, true: np.ndarray, level: float = LEVEL) -> dict[str, Any]:
    """The shape (`shape_quantiles`) on one half of the faces; per Mondrian group, each bound
    at the conformal (1 + level) / 2 quantile of the other half's `interval_scores` (the
    upper) or of their negation (the lower)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(pred) < 4:
        raise ValueError(f"age interval: need validation faces, got {len(pred)}")
    in_shape = halves(len(pred))
    shape = shape_quantiles(pred[in_shape], true[in_shape], level)
    cal_pred, cal_true = pred[~in_shape], true[~in_shape]
    cal_group = group_of(shape["edges"], cal_pred)
    mondrian = merge_groups(np.bincount(cal_group, minlength=len(shape["low"])), MIN_GROUP)
    scores = interval_scores(shape, cal_pred, cal_true)
    tail = (1 + level) / 2
    lower, upper = np.empty(mondrian.max() + 1), np.empty(mondrian.max() + 1)
    groups = []
    bounds = [-np.inf, *shape["edges"], np.inf]
    for m in range(len(lower)):
        inside = mondrian[cal_group] == m
        lower[m] = conformal_quantile(-scores[inside], tail)
        upper[m] = conformal_quantile(scores[inside], tail)
        members = np.flatnonzero(mondrian == m)
        groups.append({"from_age": _finite(bounds[members[0]]),
                       "to_age": _finite(bounds[members[-1] + 1]),
                       "faces": int(inside.sum()), "lower_scale": float(lower[m]),
                       "upper_scale": float(upper[m])})
    centre, half = centre_and_half(shape)
    # Widening keeps the guarantee: every interval contains its own prediction.
    low = np.minimum(centre - lower[mondrian] * half, 0.0)
    high = np.maximum(centre + upper[mondrian] * half, 0.0)
    return {"method": f"Mondrian split conformal: decade-weighted residual quantiles per "
                      f"predicted-age group on one half of the validation faces; each bound "
                      f"set per group of >= {MIN_GROUP} faces of the other half at its "
                      f"ceil((n + 1) {tail:g})-th smallest score",
            "level": level, "edges": shape["edges"], "low": low.tolist(),
            "high": high.tolist(), "groups": groups, "shape": shape,
            "validation_faces": int(len(pred)), "shape_faces": int(in_shape.sum()),
            "calibration_faces": int((~in_shape).sum())}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def age_interval(pred: np.ndarray, interval: Mapping[str, Any],
                 max_age: float = 116.0) -> np.ndarray:
    """[N, 2] interval in years for predicted ages `pred`, clipped to [0, max_age]."""
    pred = np.asarray(pred, np.float64)
    group = group_of(interval["edges"], pred)
    lo = pred + np.asarray(interval["low"])[group]
    hi = pred + np.asarray(interval["high"])[group]
    return np.stack([np.clip(lo, 0, max_age), np.clip(hi, 0, max_age)], -1)


def fit(result: Mapping[str, np.ndarray], level: float = LEVEL) -> dict[str, Any]:
    """Calibration from validation predictions (`evaluation.predict`'s keys)."""
    return {
        "fitted_on": "validation split",
        "gender_temperature": fit_temperature(result["gender_prob"], result["gender"]),
        "race_temperature": fit_temperature(result["race_prob"], result["race"]),
        "age_interval": fit_age_interval(result["age_pred"], result["age"], level),
    }


def assess(result: Mapping[str, np.ndarray], calibration: Mapping[str, Any]) -> dict[str, Any]:
    """ECE before/after the temperatures, and the age interval's coverage and mean width,
    overall and per true-age decade, on (test) predictions."""
    out: dict[str, Any] = {"ece": {}}
    for task in ("gender", "race"):
        t = float(calibration[f"{task}_temperature"])
        probs, labels = result[f"{task}_prob"], result[task]
        out["ece"][task] = {"temperature": t, "before": ece(probs, labels),
                            "after": ece(scaled_probs(probs, t), labels)}
    spec = calibration["age_interval"]
    bounds = age_interval(result["age_pred"], spec)
    true = np.asarray(result["age"], np.float64)
    inside = (true >= bounds[:, 0]) & (true <= bounds[:, 1])
    width = bounds[:, 1] - bounds[:, 0]
    decade = (true // 10).astype(int)
    out["age_interval"] = {
        "level": spec["level"], "method": spec.get("method"), "groups": spec.get("groups"),
        "coverage": float(inside.mean()),
        "mean_width": float(width.mean()),
        "by_decade": {f"{d * 10}-{d * 10 + 9}": {
            "n": int((decade == d).sum()), "coverage": float(inside[decade == d].mean()),
            "mean_width": float(width[decade == d].mean())} for d in np.unique(decade)},
    }
    return out
