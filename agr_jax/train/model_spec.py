"""The model and task spec a run's config and dataset describe, shared by the training loop
and the evaluation (its own module, so `evaluation` needs nothing of `train/loop.py` and
`train/loop.py` can import `evaluation`: no import cycle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from agr_jax import models, tasks
from agr_jax.data import tfds_builders


def build_model_and_spec(
    config: ml_collections.ConfigDict, tfds_dir: str | Path, bn_axis_name: str | None = None
) -> tuple[Any, tasks.TaskSpec]:
    """Task spec from the dataset's metadata, then the model with matching head widths."""
    info = tfds_builders.dataset_info(tfds_dir)
    num_races = int(info.get("num_races", 5))
    if config.tasks.get("num_races") and config.tasks.num_races != num_races:
        raise ValueError(
            f"config.tasks.num_races: {config.tasks.num_races}, but the dataset in {tfds_dir} "
            f"labels {num_races} race classes"
        )
    spec = tasks.TaskSpec.from_config(config.tasks, num_races=num_races)
    model = models.build_from_config(
        config.model,
        spec.output_sizes(),
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        bn_axis_name=bn_axis_name,
        **spec.model_options(),
    )
    return model, spec
