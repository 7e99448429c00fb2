"""Config checks and persistence: fail before any compilation, naming the key at fault."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections

from agr_jax import models
from agr_jax.train import optim

CONFIG_FILE = "config.json"
DTYPES = ("float32", "bfloat16", "float16")
PARALLEL = ("none", "shard_map", "pmap")


def validate(config: ml_collections.ConfigDict) -> None:
    def require(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"config.{key}: expected {expected}, got {config_get(config, key)!r}")

    require(config.model.name in models.available(), "model.name", f"one of {models.available()}")
    require(config.batch_size > 0, "batch_size", "a positive global batch size")
    require(config.eval_batch_size > 0, "eval_batch_size", "a positive batch size")
    require(config.data.image_size >= 16, "data.image_size", "at least 16 pixels")
    require(
        config.num_epochs > 0 or config.total_steps > 0, "num_epochs", "> 0 (or total_steps > 0)"
    )
    require(config.dtype in DTYPES, "dtype", f"one of {DTYPES}")
    require(config.param_dtype in DTYPES, "param_dtype", f"one of {DTYPES}")
    require(
        config.optimizer.name in optim.OPTIMIZERS, "optimizer.name", f"one of {optim.OPTIMIZERS}"
    )
    require(
        config.optimizer.schedule in optim.SCHEDULES,
        "optimizer.schedule",
        f"one of {optim.SCHEDULES}",
    )
    require(config.optimizer.learning_rate > 0, "optimizer.learning_rate", "> 0")
    require(config.get("parallel", "none") in PARALLEL, "parallel", f"one of {PARALLEL}")
    ratios = tuple(config.data.split_ratios)
    require(
        len(ratios) == 3 and min(ratios) >= 0 and abs(sum(ratios) - 1) < 1e-6,
        "data.split_ratios",
        "three non-negative fractions (train, validation, test) summing to 1",
    )


def config_get(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def save(config: ml_collections.ConfigDict, workdir: str | Path) -> Path:
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    return path


def load(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: not a training workdir (no {CONFIG_FILE}); "
            "pass the --workdir of a training run"
        )
    return ml_collections.ConfigDict(json.loads(path.read_text()))
