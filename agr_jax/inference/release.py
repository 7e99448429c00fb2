"""The release format: a folder anyone can load without the training config.

    model.json       format version, model options, task spec, preprocessing, class names,
                     calibration (fitted on the validation split), provenance
    weights.npz      float16 weights, keys "params/..." and "batch_stats/..." (flattened)
    evaluation.json  the evaluation report the model card is generated from
    MODEL_CARD.md    generated from evaluation.json (`model_card.py`): no hand-typed numbers
"""

from __future__ import annotations

import hashlib
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
RECIPES = {"default": "configs/utkface_faceres.py", "fast": "configs/utkface_fast_distilled.py"}


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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_JSON).write_text(json.dumps(bundle.describe(), indent=2) + "\n")
    write_weights(bundle.variables, out / WEIGHTS, dtype)
    if report is not None:
        write_card(out, report, bundle.describe())
    return out


def write_card(folder: Path, report: dict[str, Any], description: dict[str, Any]) -> None:
    """evaluation.json and the MODEL_CARD.md generated from it and model.json."""
    from agr_jax.inference import model_card

    (folder / EVALUATION).write_text(json.dumps(report, indent=2) + "\n")
    (folder / CARD).write_text(model_card.generate(report, description,
                                                   (folder / WEIGHTS).stat().st_size))


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
    """Write the run's checkpoint as a release folder (float16 weights, model.json), then
    score the written files on the run's prepared split (`refresh_release`): the evaluation
    and the calibration are those of what users run, not of the float32 checkpoint."""
    from agr_jax import configuration
    from agr_jax.inference import precision
    from agr_jax.inference.load import load_workdir, tfds_dir_of

    bundle = load_workdir(workdir, which)
    bundle.compute_dtype = precision.check(compute_dtype)
    bundle.calibration = None
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
    write_release(bundle, out)
    tfds_dir = tfds_dir_of(configuration.load(Path(workdir)), Path(workdir))
    return refresh_release(out, tfds_dir, views)


def weights_sha256(folder: str | Path) -> str:
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()


def score_release(folder: str | Path, tfds_dir: str | Path, views: int = 1
                  ) -> tuple[Bundle, dict[str, Any]]:
    """The release folder's own files (float16 weights, model.json's compute dtype, forced
    even where the host emulates it) run by the `Predictor` on the prepared build's
    validation split (the calibration is fitted there) and scored on its test split."""
    from agr_jax import evaluation, metrics
    from agr_jax.data import tfds_builders
    from agr_jax.inference import calibrate
    from agr_jax.inference.predictor import Predictor

    bundle = read_release(folder)
    predictor = Predictor(bundle, views=views, compute_dtype=bundle.compute_dtype)
    info = tfds_builders.dataset_info(tfds_dir)

    def predicted(split: str) -> dict[str, np.ndarray]:
        out = predictor.predict_labelled(tfds_builders.load_split(tfds_dir, split))
        return {**out, "gender_pred": out["gender_prob"].argmax(-1),
                "race_pred": out["race_prob"].argmax(-1), "loss": np.zeros(len(out["age"]))}

    calibration = {**calibrate.fit(predicted("validation")), "views": views}
    test = predicted("test")
    report = metrics.full_report(test, list(bundle.gender_names), list(bundle.race_names),
                                 tuple(info.get("age_bin_edges")
                                       or metrics.DEFAULT_AGE_BIN_EDGES))
    del report["loss"]  # the predictor computes no training loss
    train = tfds_builders.load_split(tfds_dir, "train")
    report.update(
        calibration=calibration,
        calibration_report=calibrate.assess(test, calibration),
        baseline_age_mae=metrics.mean_baseline_mae(evaluation.train_ages(train), test["age"]),
        source=f"{tfds_dir}:test", dataset=info.get("name"),
        protocol=evaluation._protocol_text("split", info.get("settings", {}), False),
        flip_tta=views == 2, shift_tta=0, tta=evaluation.tta_text(views == 2, 0),
        checkpoint=bundle.source.get("checkpoint"), checkpoint_step=bundle.source.get("step"),
        skipped=[],
        scored={"files": f"{WEIGHTS} (float16, as shipped) and {MODEL_JSON}",
                "weights_sha256": weights_sha256(folder),
                "compute_dtype": predictor.compute_dtype, "runner": "agr_jax Predictor",
                "splits": {s: info["splits"][s] for s in ("validation", "test")}
                if "splits" in info else None})
    bundle.calibration = calibration
    return bundle, report


def refresh_release(folder: str | Path, tfds_dir: str | Path, views: int | None = None
                    ) -> dict[str, Any]:
    """Re-score a release from its own files (`score_release`) and rewrite its model.json
    (the new calibration), evaluation.json and MODEL_CARD.md; weights.npz is left as it is.
    A folder that already has an evaluation must be re-scored on the same protocol and test
    size (the README split), else nothing is written."""
    folder = Path(folder)
    previous = folder / EVALUATION
    old = json.loads(previous.read_text()) if previous.exists() else None
    if views is None:
        views = int((read_release(folder).calibration or {}).get("views", 1))
    sha = weights_sha256(folder)
    bundle, report = score_release(folder, tfds_dir, views)
    if old is not None and (old.get("protocol"), old.get("n")) != (report["protocol"],
                                                                   report["n"]):
        raise ValueError(
            f"{previous}: was scored on {old.get('protocol')!r} (test n = {old.get('n')}), "
            f"{tfds_dir} gives {report['protocol']!r} (n = {report['n']}): refresh on the "
            "build the release was evaluated on")
    (folder / MODEL_JSON).write_text(json.dumps(bundle.describe(), indent=2) + "\n")
    write_card(folder, report, bundle.describe())
    if weights_sha256(folder) != sha:
        raise RuntimeError(f"{folder / WEIGHTS} changed while refreshing the release")
    return {"folder": str(folder), "weights_mb": (folder / WEIGHTS).stat().st_size / 1e6,
            "report": report}


def rebalance_age_head(folder: str | Path, tfds_dir: str | Path, out: str | Path | None = None,
                       **options: Any) -> dict[str, Any]:
    """Re-train the release's age head with age-balanced weights on the build's training
    split (`train/age_head.py`, the trunk frozen), write it to `out` (default: in place),
    then re-score the written files (`refresh_release`)."""
    from agr_jax.train import age_head

    folder = Path(folder)
    out = Path(out) if out else folder
    bundle = read_release(folder)

    train_x, train_ages = age_head.split_features(bundle, tfds_dir, "train")
    train_mirrored, _ = age_head.split_features(bundle, tfds_dir, "train", mirrored=True)
    val_x, val_ages = age_head.split_features(bundle, tfds_dir, "validation")
    params, report = age_head.retrain(
        bundle, np.concatenate([train_x, train_mirrored]), np.concatenate([train_ages] * 2),
        val_x, val_ages, **options)
    bundle.variables["params"]["head"]["age"] = params
    views = int((bundle.calibration or {}).get("views", 1))
    bundle.calibration = None
    bundle.source["age_head"] = {k: v for k, v in report.items() if k != "history"}
    bundle.source.setdefault("reproduce", []).append(
        f"python -m agr_jax.release --rebalance_age {out} --tfds_dir {tfds_dir}"
        + (f" --age_slack {options['slack']:g}" if options.get("slack") else ""))
    if out != folder:
        out.mkdir(parents=True, exist_ok=True)
    for stale in (EVALUATION, CARD):  # scored afresh below, on the same protocol
        previous = folder / stale
        if out != folder and previous.exists():
            (out / stale).write_text(previous.read_text())
    write_release(bundle, out)
    result = refresh_release(out, tfds_dir, views)
    result["age_head"] = report
    return result
