"""Age-head re-training (agr_jax/train/age_head.py) on a release: which loss and weighting
lower the under-20 and 60+ MAE, and what they cost overall, on the validation split.

    python benchmarks/age_head_grid.py --release agr_jax/released --tfds_dir runs/utk_tfds \
        --features runs/age_head_default.npz

The pooled features (training crops as they are and mirrored, validation) are computed once
into --features and reused. Prints one JSON line per setting: the validation bands before,
at the kept epoch (overall MAE not higher), and at the epoch best on the extremes whatever the
overall cost. The test split is not read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

GRID = (
    {"loss": "mse", "balance": "none", "learning_rate": 1e-4},
    {"loss": "mse", "balance": "sqrt_inv", "learning_rate": 3e-4},
    {"loss": "mse", "balance": "sqrt_inv", "learning_rate": 1e-4},
    {"loss": "l1", "balance": "none", "learning_rate": 1e-4},
    {"loss": "l1", "balance": "sqrt_inv", "learning_rate": 1e-4},
    {"loss": "mse", "balance": "inv", "learning_rate": 1e-4},
)


def features(release: str, tfds_dir: str, path: Path) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as cached:
            return dict(cached)
    from agr_jax.inference.release import read_release
    from agr_jax.train import age_head

    bundle, out = read_release(release), {}
    for name, mirrored in (("validation", False), ("train", False), ("train", True)):
        key = name + ("_m" if mirrored else "")
        out[key], out[name + "_ages"] = age_head.split_features(bundle, tfds_dir, name, mirrored)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", default="agr_jax/released")
    parser.add_argument("--tfds_dir", default="runs/utk_tfds")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    from agr_jax.inference.release import read_release
    from agr_jax.train import age_head

    f = features(args.release, args.tfds_dir, args.features)
    x = np.concatenate([f["train"], f["train_m"]])
    ages = np.concatenate([f["train_ages"]] * 2)
    for setting in GRID:
        _, report = age_head.retrain(read_release(args.release), x, ages, f["validation"],
                                     f["validation_ages"], epochs=args.epochs, **setting)
        history = report["history"]
        print(json.dumps({
            "setting": setting, "kept_epoch": report["kept_epoch"], "before": history[0],
            "kept": report["validation_after"],
            "best_on_extremes": min(history[1:], key=lambda b: b["young"] + b["old"]),
        }), flush=True)


if __name__ == "__main__":
    main()
