"""Config checks and persistence: fail before any compilation, naming the key at fault."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections

from agr_jax import models, tasks
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
    tasks_cfg = config.get("tasks", {})
    age_mode = tasks_cfg.get("age_mode", "regression")
    require(age_mode in tasks.AGE_MODES, "tasks.age_mode", f"one of {tasks.AGE_MODES}")
    require(
        tasks_cfg.get("weighting", "fixed") in tasks.WEIGHTINGS,
        "tasks.weighting",
        f"one of {tasks.WEIGHTINGS}",
    )
    if age_mode != "regression":
        require(
            tasks_cfg.get("age_bins") not in (None, "", ()),
            "tasks.age_bins",
            f"age-bin edges for age_mode {age_mode!r}: a preset "
            f"{sorted([*tasks.AGE_BIN_PRESETS, tasks.FIVE_YEAR])} or K+1 increasing edges",
        )
        tasks.resolve_age_edges(tasks_cfg.age_bins, float(tasks_cfg.get("max_age", 116.0)))
    optim.parse_lr_multipliers(config.optimizer.get("lr_multipliers", ()))
    ratios = tuple(config.data.split_ratios)
    require(
        len(ratios) == 3 and min(ratios) >= 0 and abs(sum(ratios) - 1) < 1e-6,
        "data.split_ratios",
        "three non-negative fractions (train, validation, test) summing to 1",
    )


def config_get(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return None  # unset key: reported as None
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
