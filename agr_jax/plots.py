"""PNG figures for evaluation reports, training curves and data summaries.

Built on `matplotlib.figure.Figure` (Agg canvas, no pyplot global state, no display needed).
Each function draws one figure from plain numpy/dict inputs and returns the path it wrote.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def confusion(section: Mapping[str, Any], path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix (recall per true class), counts in the cells."""
    counts = np.asarray(section["confusion"], np.float64)
    names = section["names"]
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = 1.6 + 0.75 * len(names)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {section['accuracy']:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    return _save(fig, path)


def mae_by_age(age: np.ndarray, age_pred: np.ndarray, path: str | Path, width: int = 5) -> Path:
    """MAE per true-age bucket of `width` years, with the number of faces per bucket."""
    bucket = (np.asarray(age) // width).astype(int)
    ids = np.unique(bucket)
    err = np.abs(np.asarray(age_pred, np.float64) - age)
    maes = [err[bucket == b].mean() for b in ids]
    counts = [int(np.sum(bucket == b)) for b in ids]
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    ax.bar(ids * width + width / 2, maes, width=width * 0.9, color="tab:orange")
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("MAE (years)")
    ax.set_title(f"Age MAE by true age ({width}-year buckets; overall {err.mean():.2f})")
    twin = ax.twinx()
    twin.plot(ids * width + width / 2, counts, "k.-", lw=0.8, ms=3)
    twin.set_ylabel("faces")
    return _save(fig, path)


def group_bars(report: Mapping[str, Any], path: str | Path) -> Path:
    """Accuracy and age MAE per race and per gender, with the max-min gap in each title."""
    panels = [
        ("by_race", "race", "gender_acc"), ("by_race", "race", "race_acc"),
        ("by_race", "race", "age_mae"), ("by_gender", "gender", "gender_acc"),
        ("by_gender", "gender", "race_acc"), ("by_gender", "gender", "age_mae"),
    ]
    fig = Figure(figsize=(13, 7))
    for k, (key, group, metric) in enumerate(panels):
        ax = fig.add_subplot(2, 3, k + 1)
        groups = report[key]
        names = list(groups)
        values = [groups[n][metric] for n in names]
        ax.bar(range(len(names)), values, color="tab:red" if metric == "age_mae" else "tab:blue")
        ax.set_xticks(range(len(names)), [f"{n}\n(n={groups[n]['n']})" for n in names],
                      fontsize=7)
        gap = report["gaps"][group].get(metric, float("nan"))
        ax.set_title(f"{metric} by {group} (gap {gap:.3f})", fontsize=9)
        if metric != "age_mae":
            ax.set_ylim(max(0.0, min(values, default=0) - 0.1), 1.0)
    return _save(fig, path)


def age_scatter(age: np.ndarray, age_pred: np.ndarray, path: str | Path) -> Path:
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    ax.scatter(age, age_pred, s=4, alpha=0.35)
    top = float(max(np.max(age), np.max(age_pred), 1.0)) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="perfect")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("true age")
    ax.set_ylabel("predicted age")
    ax.set_title("Predicted vs. true age")
    ax.legend(loc="upper left")
    return _save(fig, path)


def face_grid(
    images: Sequence[bytes],
    captions: Sequence[tuple[str, str]],
    correct: Sequence[bool],
    path: str | Path,
    cols: int = 6,
) -> Path:
    """Faces with "pred:" and "true:" caption lines; red caption where any label is wrong."""
    rows = max(1, -(-len(images) // cols))
    fig = Figure(figsize=(2.1 * cols, 2.5 * rows))
    for k, (data, (pred, true), ok) in enumerate(zip(images, captions, correct, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        ax.set_axis_off()
        ax.set_title(f"pred {pred}\ntrue {true}", fontsize=7,
                     color="black" if ok else "tab:red")
    return _save(fig, path)


def training_curves(rows: Sequence[Mapping[str, float]], path: str | Path) -> Path | None:
    """Train and validation loss, age MAE, gender and race accuracy against epochs.

    `rows` are `metric_writer.read_metrics` lines. Train values are averaged per epoch.
    Returns None when there is no validation row yet.
    """
    val = [r for r in rows if "val/loss" in r]
    epoch_at = {int(r["step"]): r["train/epoch"] for r in rows if "train/epoch" in r}
    if not val or not epoch_at:
        return None
    ends = sorted(epoch_at)

    def epoch_of(step: int) -> float:
        i = int(np.searchsorted(ends, step))
        return epoch_at[ends[min(i, len(ends) - 1)]]

    fig = Figure(figsize=(12, 3.4))
    for k, metric in enumerate(("loss", "age_mae", "gender_acc", "race_acc")):
        ax = fig.add_subplot(1, 4, k + 1)
        train = [r for r in rows if f"train/{metric}" in r]
        if train:
            by_epoch: dict[float, list[float]] = {}
            for r in train:
                by_epoch.setdefault(epoch_of(int(r["step"])), []).append(r[f"train/{metric}"])
            xs = sorted(by_epoch)
            ax.plot(xs, [np.mean(by_epoch[x]) for x in xs], "o-", ms=3, label="train")
        ax.plot([epoch_of(int(r["step"])) for r in val], [r[f"val/{metric}"] for r in val],
                "s-", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    return _save(fig, path)


def bar_counts(counts: Mapping[str, int], path: str | Path, title: str) -> Path:
    fig = Figure(figsize=(max(4.0, 0.8 * len(counts) + 2), 3.5))
    ax = fig.add_subplot()
    names = list(counts)
    ax.bar(range(len(names)), [counts[n] for n in names])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    for i, n in enumerate(names):
        ax.text(i, counts[n], f"{counts[n]:,}", ha="center", va="bottom", fontsize=7)
    ax.set_title(title)
    return _save(fig, path)


def histogram(values: np.ndarray, path: str | Path, title: str, xlabel: str, bins: int) -> Path:
    fig = Figure(figsize=(8, 3.5))
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color="tab:green")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("faces")
    ax.set_title(title)
    return _save(fig, path)


def heatmap(table: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path,
            title: str) -> Path:
    fig = Figure(figsize=(1.5 + 1.1 * len(cols), 1.2 + 0.5 * len(rows)))
    ax = fig.add_subplot()
    ax.imshow(table, cmap="Greens")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{int(table[i, j]):,}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    return _save(fig, path)
