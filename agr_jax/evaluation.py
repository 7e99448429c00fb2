"""Batched prediction over a dataset, and the headline metrics table.

Batches are padded to a fixed size so the eval step compiles once; padding is cut away on
the host. Device outputs are fetched together at the end (no per-batch host sync).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from agr_jax import metrics

LABEL_KEYS = ("age", "gender", "race")


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Numeric arrays only, padded by repeating the last example up to `size`."""
    n = len(batch["age"])
    if n > size:
        raise ValueError(f"batch of {n} exceeds eval batch size {size}")
    return {
        k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) if n < size else v
        for k, v in batch.items()
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"
    }


def predict(
    eval_step: Callable[[Any, dict], dict],
    state: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    batch_size: int,
    put: Callable[[dict], Any] = lambda b: b,
) -> dict[str, np.ndarray]:
    """Per-example predictions, losses and labels (plus `file_name` when the batches carry it)."""
    device_outputs, sizes = [], []
    host = collections.defaultdict(list)
    for batch in batches:
        n = len(batch["age"])
        device_outputs.append(eval_step(state, put(pad_batch(batch, batch_size))))
        sizes.append(n)
        for k in LABEL_KEYS:
            host[k].append(np.asarray(batch[k]))
        if "file_name" in batch:
            host["file_name"].append(np.asarray(batch["file_name"]))
    if not sizes:
        raise ValueError("evaluation: the dataset is empty")
    fetched = jax.device_get(device_outputs)
    result = {k: np.concatenate(v) for k, v in host.items()}
    for key in fetched[0]:
        result[key] = np.concatenate([out[key][:n] for out, n in zip(fetched, sizes, strict=True)])
    return result


def _on_device_if_placed(config: Any, tfds_dir: Path, split: str,
                         eval_step: Callable) -> tuple[Any, Callable | None, bool]:
    """The split, decoded and copied to this process' device when the run's
    `data.placement` puts it there (`train/device_data.py`), with a step that gathers its
    rows; else the split as stored, None, False."""
    import logging

    from agr_jax.train import device_data
    from agr_jax.train import input as input_lib

    decoded = input_lib.load_training_split(config, tfds_dir, split)
    placement = device_data.choose_placement(config, [decoded], "none")
    logging.getLogger(__name__).info("evaluation: %s", placement.reason)
    if not placement.on_device:
        return input_lib.load_split(tfds_dir, split), None, False
    mesh = jax.sharding.Mesh(jax.local_devices()[:1], ("data",))
    images = device_data.put_split(decoded, mesh)
    gathered = jax.jit(device_data.gathering(eval_step))
    return decoded, lambda state, batch: gathered(state, images, batch), True


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A small aligned text table: one row per split/source, one column per metric."""
    cols = list(next(iter(rows.values())).keys())
    w = max(12, *(len(c) + 2 for c in cols))
    first = max(12, *(len(n) + 2 for n in rows))
    lines = [" " * first + "".join(f"{c:>{w}s}" for c in cols)]
    for name, vals in rows.items():
        cells = "".join(
            f"{vals[c]:>{w}d}" if isinstance(vals[c], int) else f"{vals[c]:>{w}.4f}" for c in cols
        )
        lines.append(f"{name:{first}s}{cells}")
    return "\n".join(lines)


def train_ages(source: Any) -> np.ndarray:
    return np.asarray([int(source[i]["age"]) for i in range(len(source))], np.float64)


def tta_views(flip: bool, shift: int = 0) -> tuple[tuple[int, int, bool], ...]:
    """(dy, dx, mirrored) per test-time view: the face (and its mirror with `flip`), and with
    `shift` > 0 the 3x3 grid of crops offset by 0 or +-`shift` px in each axis: the kinds of
    view the training augmentation (flip, pad-crop) showed the model."""
    offsets = (0, -shift, shift) if shift > 0 else (0,)
    mirrors = (False, True) if flip else (False,)
    return tuple((dy, dx, m) for dy in offsets for dx in offsets for m in mirrors)


def shifted_view(images: Any, dy: int, dx: int, mirrored: bool) -> Any:
    """One view of an [N, H, W, C] batch: mirrored, then moved by (dy, dx) px over a
    reflect-padded border (the padding the training pad-crop uses)."""
    import jax.numpy as jnp

    if mirrored:
        images = images[:, :, ::-1]
    if dy or dx:
        p = max(abs(dy), abs(dx))
        h, w = images.shape[1:3]
        padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        images = padded[:, p + dy: p + dy + h, p + dx: p + dx + w]
    return images


def tta(eval_step: Callable[[Any, dict], dict],
        views: tuple[tuple[int, int, bool], ...]) -> Callable[[Any, dict], dict]:
    """Test-time augmentation: the mean of the outputs over `views` (age in years and class
    probabilities averaged, classes re-decoded from the mean)."""
    import jax.numpy as jnp

    def step(state: Any, batch: dict) -> dict:
        outs = [eval_step(state, {**batch, "image": shifted_view(batch["image"], *v)})
                for v in views]
        out = {k: sum(o[k] for o in outs) / len(outs)
               for k in outs[0] if not k.endswith("_pred") or k == "age_pred"}
        out["gender_pred"] = jnp.argmax(out["gender_prob"], -1)
        out["race_pred"] = jnp.argmax(out["race_prob"], -1)
        return out

    return step


def tta_text(flip: bool, shift: int) -> str:
    """How the report names the views averaged (empty without TTA)."""
    if not flip and shift <= 0:
        return ""
    what = "the face and its mirror" if flip else "the face"
    grid = f", each at the 3x3 grid of shifts by 0 or +-{shift} px" if shift > 0 else ""
    return f"{len(tta_views(flip, shift))} views: {what}{grid}"


PROTOCOLS = ("split", "coral", "kfold")
GRID_FACES = 24


def _caption(age: float, gender: int, race: int, genders, races) -> str:
    race_name = races[race] if 0 <= race < len(races) else "?"
    return f"{age:.0f}y {genders[gender][0].upper()} {race_name}"


def _figures(
    result: dict[str, np.ndarray], report: dict, source: Any, out_dir: Path,
    genders, races, rel_to: Path,
) -> dict[str, str]:
    """Writes the report figures; returns caption -> path relative to `rel_to`."""
    from agr_jax import plots

    paths = {
        "Gender confusion": plots.confusion(report["gender"], out_dir / "confusion_gender.png",
                                            "Gender"),
        "Race confusion": plots.confusion(report["race"], out_dir / "confusion_race.png", "Race"),
        "Age-bin confusion": plots.confusion(report["age_bins"],
                                             out_dir / "confusion_age_bins.png", "Age bins"),
        "Age MAE by true age": plots.mae_by_age(result["age"], result["age_pred"],
                                                out_dir / "mae_by_age.png"),
        "Metrics per race and gender": plots.group_bars(report, out_dir / "group_bars.png"),
        "Predicted vs. true age": plots.age_scatter(result["age"], result["age_pred"],
                                                    out_dir / "age_scatter.png"),
    }
    n = len(result["age"])
    pick = np.sort(np.random.default_rng(0).choice(n, size=min(GRID_FACES, n), replace=False))
    images, captions, correct = [], [], []
    for i in pick:
        index = int(result["index"][i])
        record = source[index]
        if "file_name" in result and str(record["file_name"]) != str(result["file_name"][i]):
            raise RuntimeError(
                f"evaluation order mismatch at {index}: source has {record['file_name']!r}, "
                f"predictions {result['file_name'][i]!r}"
            )
        images.append(record["image"])
        race = int(result["race"][i])
        captions.append((
            _caption(result["age_pred"][i], int(result["gender_pred"][i]),
                     int(result["race_pred"][i]), genders, races),
            _caption(result["age"][i], int(result["gender"][i]), race, genders, races),
        ))
        correct.append(bool(
            result["gender_pred"][i] == result["gender"][i]
            and (race < 0 or result["race_pred"][i] == race)
            and abs(result["age_pred"][i] - result["age"][i]) <= 5
        ))
    paths["Test faces (red: a label wrong or age off by > 5 years)"] = plots.face_grid(
        images, captions, correct, out_dir / "faces.png"
    )
    return {k: str(Path(v).relative_to(rel_to)) for k, v in paths.items()}


def evaluate_workdir(
    workdir: str | Path,
    split: str = "test",
    data_dir: str | Path | None = None,
    which: str | None = None,
    protocol: str = "split",
    figures: bool = True,
    flip_tta: bool | None = None,
    shift_tta: int | None = None,
    calibrate: bool = True,
    report_name: str | None = None,
    compute_dtype: str | None = None,
) -> dict[str, Any]:
    """Evaluate a training run's checkpoint on a split (or a UTKFace-format folder).

    Writes `<workdir>/eval/<name>.json` (headline keys `n`, `age_mae`, `gender_acc`,
    `race_acc` at the top level), `<name>.md` (the report) and the figures in `<name>/`,
    where name is the split or folder name, suffixed `_coral` for the CORAL protocol (only
    true ages 21-60 are scored; every report also carries that subset under `coral`).
    `kfold` scores the split like `split` and records which fold the build holds out.
    `which`: "best" or "latest"; None takes the run's `config.eval_checkpoint`; likewise
    `flip_tta` and `shift_tta` (None: `config.eval_flip_tta`, `config.eval_shift_tta`).
    `calibrate`: also predict the validation split with the same views, fit the gender/race
    temperatures and the age interval there (`inference/calibrate.py`) and report ECE
    before/after and interval coverage per true-age decade on the evaluated faces.
    `report_name` replaces the file stem (the release writes `test_release`, so the run's
    own report is kept). `compute_dtype` replaces `config.dtype` (a release is measured in
    the dtype it will run in).
    """
    # Imported here: only evaluating a workdir needs them (train/loop.py imports this module
    # for `predict`; the model is built by train/model_spec.py, not the loop: no cycle).
    from agr_jax import configuration
    from agr_jax import report as report_lib
    from agr_jax.data import prepare, tfds_builders, utkface
    from agr_jax.train import input as input_lib
    from agr_jax.train import phases
    from agr_jax.train.checkpoint import require_checkpoint, restore_for_inference
    from agr_jax.train.model_spec import build_model_and_spec
    from agr_jax.train.state import create_train_state
    from agr_jax.train.step import make_eval_step

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    workdir = Path(workdir)
    config = configuration.load(workdir)
    if compute_dtype is not None:
        config.dtype = compute_dtype
    which = which or config.get("eval_checkpoint", "best")
    require_checkpoint(workdir, which)  # say so before building anything
    tfds_dir = Path(config.data.tfds_dir) if config.data.get("tfds_dir") else workdir / "tfds"
    info = tfds_builders.dataset_info(tfds_dir)
    model, spec = build_model_and_spec(config, tfds_dir)
    # The optimiser's tree as training built it (phases wrap it): restoring checks structure.
    tx = phases.run_optimizer(config, max(int(config.total_steps), 1000), steps_per_epoch=1)
    size = int(config.data.image_size)
    # Abstract template: restoring needs shapes and placement only, not an init compile.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    template = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
        jax.eval_shape(lambda: create_train_state(
            model, tx, (size, size, 3), int(config.seed),
            ema=float(config.optimizer.get("ema_decay", 0.0)) > 0)),
    )
    state, meta = restore_for_inference(workdir, template, which=which)

    skipped: list[dict[str, str]] = []
    genders, races = list(utkface.GENDERS), list(info.get("race_names", utkface.RACES))
    if data_dir is not None:
        source, read = prepare.folder_source(data_dir)
        skipped = [{"file_name": r.file_name, "reason": r.reason} for r in read.rejects]
        name = Path(data_dir).name
        races = list(utkface.RACES)
    else:
        source = input_lib.load_split(tfds_dir, split)
        name = split
    eval_step = make_eval_step(model, spec)
    flip = bool(config.get("eval_flip_tta", False) if flip_tta is None else flip_tta)
    shift = int(config.get("eval_shift_tta", 0) if shift_tta is None else shift_tta)
    configuration.check_eval_shift_tta(shift, size)
    if flip or shift:
        eval_step = tta(eval_step, tta_views(flip, shift))
    eval_step = jax.jit(eval_step)  # the calibration pass below reuses it
    on_device = False
    if data_dir is None and config.data.get("placement", "host") != "host":
        source, step, on_device = _on_device_if_placed(config, tfds_dir, split, eval_step)
    result = predict(
        step if on_device else eval_step,
        state,
        input_lib.make_eval_batches(config, source, with_metadata=True, rows_only=on_device),
        int(config.eval_batch_size),
    )
    result["index"] = np.arange(len(result["age"]))
    calibration = None
    if calibrate:
        from agr_jax.inference import calibrate as calibrate_lib

        val = result if data_dir is None and split == "validation" else predict(
            eval_step, state,
            input_lib.make_eval_batches(config, input_lib.load_split(tfds_dir, "validation")),
            int(config.eval_batch_size))
        calibration = calibrate_lib.fit(val)
    if protocol == "coral":
        lo, hi = metrics.CORAL_AGE_RANGE
        result = metrics.subset(result, (result["age"] >= lo) & (result["age"] <= hi))
        name += "_coral"
        if not len(result["age"]):
            raise ValueError(f"protocol coral: no faces aged {lo}-{hi} in {name}")
    edges = tuple(config.get("eval_age_bin_edges") or info.get("age_bin_edges")
                  or metrics.DEFAULT_AGE_BIN_EDGES)
    report: dict[str, Any] = metrics.full_report(result, genders, races, edges)
    if calibration is not None:
        from agr_jax.inference import calibrate as calibrate_lib

        report["calibration"] = calibration
        report["calibration_report"] = calibrate_lib.assess(result, calibration)
    report["baseline_age_mae"] = metrics.mean_baseline_mae(
        train_ages(input_lib.load_split(tfds_dir, "train")), result["age"]
    )
    settings = info.get("settings", {})
    run_fold = (int(config.data.get("folds", 0) or 0), int(config.data.get("fold", 0) or 0))
    data_fold = (int(settings.get("folds", 0) or 0), int(settings.get("fold", 0) or 0))
    if data_dir is None and settings and run_fold[0] and run_fold != data_fold:
        raise ValueError(
            f"{tfds_dir} now points at a build with folds/fold {data_fold}, but this run was "
            f"trained on {run_fold}: give each fold its own config.data.tfds_dir"
        )
    report.update(
        source=str(data_dir) if data_dir is not None else f"{tfds_dir}:{split}",
        dataset=info.get("name"),
        protocol=_protocol_text(protocol, settings, data_dir is not None),
        flip_tta=flip,
        shift_tta=shift,
        tta=tta_text(flip, shift),
        checkpoint=which,
        checkpoint_step=int(meta.get("step", -1)),
        skipped=skipped,
    )
    if info.get("age_note"):
        report["age_note"] = info["age_note"]
    name = report_name or name
    out_dir = workdir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = (_figures(result, report, source, out_dir / name, genders, races, out_dir)
            if figures else {})
    out = out_dir / f"{name}.json"
    out.write_text(json.dumps({**report, "figures": figs}, indent=2) + "\n")
    md = out_dir / f"{name}.md"
    md.write_text(report_lib.markdown(report, figs, f"Evaluation: {workdir.name} on {name}"))
    report.update(report_path=str(out), markdown_path=str(md), figures=figs)
    return report


_GROUPED_BY = {
    "fairface": "image, test = FairFace's validation CSV",
    "imdb_wiki": "person",
}


def _protocol_text(protocol: str, settings: dict, folder: bool) -> str:
    if folder:
        return "every valid image of the folder"
    folds = int(settings.get("folds", 0) or 0)
    split = (f"fold {settings.get('fold')} of {folds} (timestamp groups, seed "
             f"{settings.get('seed')}) held out as test" if folds else
             f"seeded split by {_GROUPED_BY.get(settings.get('dataset'), 'capture timestamp')} "
             f"(seed {settings.get('seed')}, ratios {settings.get('ratios')})")
    if protocol == "kfold" and not folds:
        raise ValueError("protocol kfold: this dataset was prepared without --folds "
                         "(set config.data.folds / fold, or prepare --folds N --fold K)")
    if protocol == "coral":
        return f"CORAL: true ages {metrics.CORAL_AGE_RANGE[0]}-{metrics.CORAL_AGE_RANGE[1]} " \
            f"only; {split}"
    return split


FOLD_METRICS = ("n", "age_mae", "age_cs5", "age_bin_acc", "gender_acc", "gender_macro_f1",
                "race_acc", "race_macro_f1")


def summarize_folds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """k-fold protocol: mean and standard deviation of each headline metric over the folds
    (and the per-race gaps), plus each fold's values."""
    if not reports:
        raise ValueError("summarize_folds: no fold reports")
    out: dict[str, Any] = {"folds": len(reports), "mean": {}, "std": {}}
    for key in FOLD_METRICS:
        values = np.asarray([r[key] for r in reports], np.float64)
        out["mean"][key] = float(values.mean())
        out["std"][key] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    for key in ("age_mae", "gender_acc", "race_acc"):
        gaps = np.asarray([r["gaps"]["race"][key] for r in reports], np.float64)
        out["mean"][f"race_gap_{key}"] = float(gaps.mean())
    out["per_fold"] = [{k: r[k] for k in FOLD_METRICS} | {"protocol": r.get("protocol")}
                       for r in reports]
    return out
