"""The one way inference touches training artefacts: a workdir's checkpoint -> a `Bundle`.

Reads the run's config.json and restores the checkpoint as plain arrays (no optimiser, no
model template), so nothing here imports the training loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agr_jax import configuration, tasks
from agr_jax.data import utkface
from agr_jax.inference.bundle import Bundle, as_float32
from agr_jax.train.checkpoint import restore_raw


def tfds_dir_of(config: Any, workdir: Path) -> Path:
    return Path(config.data.tfds_dir) if config.data.get("tfds_dir") else workdir / "tfds"


def validation_split(workdir: str | Path) -> Any:
    """The run's validation split (random access: records with JPEG `image` and labels)."""
    from agr_jax.data import tfds_builders

    workdir = Path(workdir)
    return tfds_builders.load_split(tfds_dir_of(configuration.load(workdir), workdir),
                                    "validation")


def dataset_names(config: Any, workdir: Path) -> tuple[int, tuple[str, ...]]:
    """(number of races, race names) from the run's prepared dataset; UTKFace's when the
    dataset is no longer on disk (the race head's width is then checked against it)."""
    from agr_jax.data import tfds_builders

    try:
        info = tfds_builders.dataset_info(tfds_dir_of(config, workdir))
    except Exception:  # noqa: BLE001 - moved or deleted dataset: fall back to UTKFace names
        names = tuple(utkface.RACES)
        return int(config.tasks.get("num_races") or len(names)), names
    names = tuple(info.get("race_names", utkface.RACES))
    return int(info.get("num_races", len(names))), names


def load_workdir(workdir: str | Path, which: str | None = None) -> Bundle:
    """The `which` checkpoint ("best"/"latest"; default: the run's `eval_checkpoint`) of a
    training run as an inference bundle (the moving average of the weights when kept)."""
    workdir = Path(workdir)
    config = configuration.load(workdir)
    which = which or config.get("eval_checkpoint", "best")
    state, meta = restore_raw(workdir, which)
    num_races, race_names = dataset_names(config, workdir)
    spec = tasks.TaskSpec.from_config(config.tasks, num_races=num_races)
    averaged = state.get("ema")
    source = averaged if isinstance(averaged, dict) and averaged.get("params") else state
    variables = as_float32({"params": source["params"],
                            "batch_stats": source.get("batch_stats") or {}})
    model = config.model.to_dict()
    return Bundle(
        model=model, task_spec=spec, image_size=int(config.data.image_size),
        gender_names=tuple(utkface.GENDERS), race_names=race_names, variables=variables,
        source={"workdir": str(workdir), "config_name": config.get("name"),
                "checkpoint": which, "step": int(meta["checkpoint_step"]),
                "init_checkpoint": config.get("init", {}).get("checkpoint"),
                "param_count": int(sum(np.size(x) for x in _leaves(variables["params"])))},
    )


def _leaves(tree: Any) -> list:
    import jax

    return jax.tree.leaves(tree)
