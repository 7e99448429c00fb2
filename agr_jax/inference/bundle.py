"""The self-contained inference bundle: everything needed to build and run a model.

A bundle holds no training config: the model options, the task spec, the preprocessing and
the calibration, plus the weights. `load.py` builds one from a workdir, `release.py` writes
one to disk and reads it back, the predictor runs one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from agr_jax import models, tasks
from agr_jax.inference import precision

FORMAT_VERSION = 1


@dataclasses.dataclass
class Bundle:
    model: dict[str, Any]  # config.model: `name` plus the backbone's options
    task_spec: tasks.TaskSpec
    image_size: int  # crops are resized (PIL bilinear) to image_size^2 RGB uint8
    gender_names: tuple[str, ...]
    race_names: tuple[str, ...]
    variables: dict[str, Any]  # {"params", "batch_stats"}: numpy arrays
    calibration: dict[str, Any] | None = None  # calibrate.fit's output; None: raw outputs
    source: dict[str, Any] = dataclasses.field(default_factory=dict)  # workdir, step, ...
    # The dtype the release was measured computing in (`precision.py`); weights stay float32.
    compute_dtype: str = "float32"

    def build_model(self, dtype: str | None = None) -> Any:
        """The Flax module computing in `dtype` (None: `compute_dtype`), float32 weights."""
        return models.build_from_config(
            self.model, self.task_spec.output_sizes(),
            dtype=precision.check(dtype or self.compute_dtype), param_dtype="float32",
            **self.task_spec.model_options())

    def describe(self) -> dict[str, Any]:
        """Everything but the weights, JSON-ready (the release's model.json)."""
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "compute_dtype": self.compute_dtype,
            "tasks": task_spec_to_dict(self.task_spec),
            "preprocessing": {
                "image_size": self.image_size, "color": "RGB", "dtype": "uint8",
                "resize": "PIL bilinear to image_size x image_size (aspect not kept)",
                "normalisation": "inside the model: (p / 255 - 0.5) / 0.5",
            },
            "gender_names": list(self.gender_names),
            "race_names": list(self.race_names),
            "calibration": self.calibration,
            "source": self.source,
        }


def task_spec_to_dict(spec: tasks.TaskSpec) -> dict[str, Any]:
    out = dataclasses.asdict(spec)
    out["weights"] = [list(w) for w in spec.weights]
    out["age_edges"] = list(spec.age_edges)
    return out


def task_spec_from_dict(values: dict[str, Any]) -> tasks.TaskSpec:
    values = dict(values)
    values["weights"] = tuple((str(t), float(w)) for t, w in values.get("weights", ()))
    values["age_edges"] = tuple(float(e) for e in values.get("age_edges", ()))
    return tasks.TaskSpec(**values)


def from_description(description: dict[str, Any], variables: dict[str, Any]) -> Bundle:
    """The inverse of `Bundle.describe` (plus the weights)."""
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"model.json: format_version {version!r}, this agr_jax reads "
                         f"{FORMAT_VERSION}")
    return Bundle(
        model=dict(description["model"]),
        task_spec=task_spec_from_dict(description["tasks"]),
        image_size=int(description["preprocessing"]["image_size"]),
        gender_names=tuple(description["gender_names"]),
        race_names=tuple(description["race_names"]),
        variables=variables,
        calibration=description.get("calibration"),
        source=dict(description.get("source") or {}),
        compute_dtype=precision.check(description.get("compute_dtype", "float32"),
                                      "model.json compute_dtype"),
    )


def as_float32(tree: Any) -> Any:
    """Float leaves to float32 (a float16 release computes in float32)."""
    import jax

    return jax.tree.map(
        lambda x: np.asarray(x, np.float32) if np.asarray(x).dtype.kind == "f" else np.asarray(x),
        tree)
