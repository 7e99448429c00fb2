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


def evaluate_workdir(
    workdir: str | Path,
    split: str = "test",
    data_dir: str | Path | None = None,
    which: str = "best",
) -> dict[str, Any]:
    """Evaluate a training run's checkpoint on a split (or a UTKFace-format folder).

    Writes `<workdir>/eval/<split-or-folder-name>.json` and returns the metrics.
    """
    # Imported here so `evaluation` stays importable by the training loop without a cycle.
    from agr_jax import configuration
    from agr_jax.data import prepare
    from agr_jax.train import input as input_lib
    from agr_jax.train.checkpoint import require_checkpoint, restore_for_inference
    from agr_jax.train.loop import build_model_and_spec
    from agr_jax.train.optim import make_optimizer
    from agr_jax.train.state import create_train_state
    from agr_jax.train.step import make_eval_step

    workdir = Path(workdir)
    config = configuration.load(workdir)
    require_checkpoint(workdir, which)  # say so before building anything
    tfds_dir = Path(config.data.tfds_dir) if config.data.get("tfds_dir") else workdir / "tfds"
    model, spec = build_model_and_spec(config, tfds_dir)
    tx = make_optimizer(config.optimizer, max(int(config.total_steps), 1000))
    size = int(config.data.image_size)
    template = create_train_state(model, tx, (size, size, 3), int(config.seed))
    state, meta = restore_for_inference(workdir, template, which=which)

    skipped: list[dict[str, str]] = []
    if data_dir is not None:
        source, read = prepare.folder_source(data_dir)
        skipped = [{"file_name": r.file_name, "reason": r.reason} for r in read.rejects]
        name = Path(data_dir).name
    else:
        source = input_lib.load_split(tfds_dir, split)
        name = split
    result = predict(
        jax.jit(make_eval_step(model, spec)),
        state,
        input_lib.make_eval_batches(config, source),
        int(config.eval_batch_size),
    )
    report: dict[str, Any] = dict(metrics.summary(result))
    report["baseline_age_mae"] = metrics.mean_baseline_mae(
        train_ages(input_lib.load_split(tfds_dir, "train")), result["age"]
    )
    report.update(
        source=str(data_dir) if data_dir is not None else f"{tfds_dir}:{split}",
        checkpoint=which,
        checkpoint_step=int(meta.get("step", -1)),
        skipped=skipped,
    )
    out = workdir / "eval" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    report["report_path"] = str(out)
    return report
