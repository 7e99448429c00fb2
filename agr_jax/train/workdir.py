"""A training workdir belongs to one config: refuse to mix runs, or start afresh on request.

`--overwrite` discards the previous run's outputs (checkpoints, best checkpoint, metrics,
TensorBoard logs, eval reports) and starts from step 0 with the new config. Data caches
(the prepared TFDS set, generated synthetic faces) are kept: they are keyed by their own
settings and rebuilt only when those change.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import ml_collections

from agr_jax import configuration

log = logging.getLogger(__name__)

RUN_OUTPUTS = ("checkpoints", "best", "metrics.jsonl", "tensorboard", "eval")
# How a run executes, not what it trains: these may change when resuming (e.g. save on 8
# devices, resume on 1; a longer run; other logging), and the change is logged.
EXECUTION_KEYS = frozenset(
    {
        "parallel",
        "cpu_devices",
        "total_steps",
        "num_epochs",
        "eval_batch_size",
        "log_every_steps",
        "checkpoint_every_steps",
        "prefetch",
        "data.worker_count",
        "data.decoded_cache_gb",  # same batches either way
        "eval_flip_tta",
        "eval_shift_tta",
        "eval_checkpoint",
        "model.conv_impl",  # same parameters either way
        "data.placement",  # same batches either way (train/device_data.py)
        "steps_per_call",  # same steps, fewer dispatches (train/multi_step.py)
    }
)


class WorkdirConflict(ValueError):
    """The workdir holds a run with a different config."""


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(saved: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """`key: saved -> new` lines for every leaf that differs (missing shown as <unset>).

    A key the saved config lacks counts as its value in `defaults` (a key added to the base
    config after that run was started must not make the same command refuse to resume)."""
    b = _flat(new)
    filled = {k: v for k, v in _flat(defaults or {}).items() if k in b}
    a = {**filled, **_flat(saved)}
    return [
        f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k, "<unset>") != b.get(k, "<unset>")
    ]


def prepare(config: ml_collections.ConfigDict, workdir: str | Path, overwrite: bool) -> None:
    """Check `workdir` against `config`, clear it when `overwrite`, then save the config."""
    workdir = Path(workdir)
    saved_path = workdir / configuration.CONFIG_FILE
    if overwrite:
        removed = [name for name in RUN_OUTPUTS if (workdir / name).exists()]
        for name in removed:
            path = workdir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if removed:
            log.warning("--overwrite: removed %s from %s", ", ".join(removed), workdir)
    elif saved_path.exists():
        new = json.loads(config.to_json_best_effort())
        defaults = json.loads(configuration.base_config().to_json_best_effort())
        diffs = config_differences(json.loads(saved_path.read_text()), new, defaults)
        accepted = [d for d in diffs if d.split(":", 1)[0] in EXECUTION_KEYS]
        if accepted:
            log.warning("resuming with changed execution settings: %s", "; ".join(accepted))
        diffs = [d for d in diffs if d not in accepted]
        if diffs:
            raise WorkdirConflict(
                f"{saved_path}: this workdir holds a run with a different config:\n  "
                + "\n  ".join(diffs)
                + "\nUse another --workdir, or pass --overwrite to discard that run "
                "(checkpoints, metrics) and start afresh with the new config."
            )
    configuration.save(config, workdir)
