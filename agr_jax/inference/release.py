"""The release format: a folder anyone can load without the training config.

    model.json       format version, model options, task spec, preprocessing, class names,
                     calibration (fitted on the validation split), provenance
    weights.npz      float16 weights, keys "params/..." and "batch_stats/..." (flattened)
    evaluation.json  the evaluation report the model card is generated from
    MODEL_CARD.md    generated from evaluation.json (`model_card.py`): no hand-typed numbers
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from agr_jax.inference import bundle as bundle_lib
from agr_jax.inference.bundle import Bundle

MODEL_JSON, WEIGHTS, EVALUATION, CARD = ("model.json", "weights.npz", "evaluation.json",
                                         "MODEL_CARD.md")
# The releases shipped in the package, by name -> folder under agr_jax/: "default" the
# accurate recipe, "fast" a small RoR for the 2,700 crops/s CPU target the default misses.
RELEASES = {"default": "released", "fast": "released_fast"}
# The recipe each release is trained with (named in the error when its folder is empty).
RECIPES = {"default": "configs/utkface_cpu.py", "fast": "configs/utkface_fast.py"}


def released_dir(name: str = "default") -> Path:
    """The package's release `name` (`RELEASES`; "default": `agr_jax/released`)."""
    if name not in RELEASES:
        raise ValueError(f"release: expected one of {sorted(RELEASES)}, got {name!r}")
    return Path(__file__).resolve().parents[1] / RELEASES[name]


def read_released(name: str = "default") -> Bundle:
    """The package's release `name`; a missing one's error also names its training recipe,
    since a fresh checkout may ship a release's folder before its weights exist."""
    folder = released_dir(name)
    try:
        return read_release(folder)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}. Release {name!r} is trained with `python -m agr_jax.train --config "
            f"{RECIPES[name]} --workdir RUN`, then `python -m agr_jax.release --workdir RUN "
            f"--out agr_jax/{RELEASES[name]}`") from None


def write_weights(variables: dict[str, Any], path: Path, dtype: Any = np.float16) -> None:
    flat = traverse_util.flatten_dict(variables, sep="/")
    np.savez_compressed(path, **{k: np.asarray(v).astype(dtype) if np.asarray(v).dtype.kind
                                 == "f" else np.asarray(v) for k, v in flat.items()})


def read_weights(path: Path) -> dict[str, Any]:
    with np.load(path) as data:
        flat = {k: data[k] for k in data.files}
    tree = traverse_util.unflatten_dict(flat, sep="/")
    tree.setdefault("batch_stats", {})
    return bundle_lib.as_float32(tree)


def write_release(bundle: Bundle, out: str | Path, report: dict[str, Any] | None = None,
                  dtype: Any = np.float16) -> Path:
    """Writes the folder; with `report` also evaluation.json and the generated model card."""
    from agr_jax.inference import model_card

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_JSON).write_text(json.dumps(bundle.describe(), indent=2) + "\n")
    write_weights(bundle.variables, out / WEIGHTS, dtype)
    if report is not None:
        (out / EVALUATION).write_text(json.dumps(report, indent=2) + "\n")
        (out / CARD).write_text(model_card.generate(report, bundle.describe(),
                                                    (out / WEIGHTS).stat().st_size))
    return out


def read_release(folder: str | Path) -> Bundle:
    folder = Path(folder)
    meta, weights = folder / MODEL_JSON, folder / WEIGHTS
    if not meta.exists() or not weights.exists():
        raise FileNotFoundError(
            f"{folder}: no released model here (needs {MODEL_JSON} and {WEIGHTS}); write one "
            f"with `python -m agr_jax.release --workdir RUN --out {folder}` or use "
            "Predictor.from_workdir(RUN)")
    try:
        description = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta}: not valid JSON ({e})") from e
    return bundle_lib.from_description(description, read_weights(weights))


def release_workdir(workdir: str | Path, out: str | Path, which: str | None = None,
                    views: int = 1, compute_dtype: str = "float32") -> dict[str, Any]:
    """Evaluate the run's checkpoint as the predictor runs it (`views`: 1 the face, 2 with
    its mirror; `compute_dtype`: see `precision.py`), fit the calibration on the validation
    split, write the release folder."""
    from agr_jax.evaluation import evaluate_workdir
    from agr_jax.inference import precision
    from agr_jax.inference.load import load_workdir

    bundle = load_workdir(workdir, which)
    bundle.compute_dtype = precision.check(compute_dtype)
    report = evaluate_workdir(workdir, "test", which=bundle.source["checkpoint"],
                              figures=False, flip_tta=views == 2, shift_tta=0,
                              report_name="test_release", compute_dtype=compute_dtype)
    for key in ("report_path", "markdown_path", "figures"):
        report.pop(key, None)
    bundle.calibration = {**report["calibration"], "views": views}
    name = bundle.source.get("config_name") or "CONFIG"
    start = bundle.source.get("init_checkpoint")
    bundle.source["reproduce"] = [
        *([f"# first the pretrained start {start} (init.checkpoint): configs/{name}.py's "
           "docstring gives the download and convert commands"] if start else []),
        f"python -m agr_jax.train --config configs/{name}.py --workdir {workdir}",
        f"python -m agr_jax.release --workdir {workdir} --out {out}"
        + (f" --views {views}" if views != 1 else "")
        + (f" --compute_dtype {compute_dtype}" if compute_dtype != "float32" else ""),
    ]
    folder = write_release(bundle, out, report)
    return {"folder": str(folder), "weights_mb": (folder / WEIGHTS).stat().st_size / 1e6,
            "report": report}
