"""Orbax checkpoints: `latest` (resume point, with the grain iterator) and `best` (by val loss).

Two managers keep the two roles independent: pruning old `latest` checkpoints can never
delete the best one, and the best one never carries (or needs) data-iterator state.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from agr_jax.train import faults

LATEST_DIR = "checkpoints"
BEST_DIR = "best"
# Parts of the state whose structure the model decides; a restore checks these first.
MODEL_COLLECTIONS = ("params", "batch_stats", "ema")  # ema: optimizer.ema_decay > 0
MAX_LISTED = 25


class CheckpointMismatch(ValueError):
    """The checkpoint was written by a different model: lists the differing parameters."""


def _path_str(path: tuple) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def flatten(tree: Any) -> dict[str, Any]:
    """{"params/backbone/conv/kernel": leaf, ...}: paths as plain strings, whatever the
    container (dataclass attribute, dict key, sequence index), so a restored dict tree and a
    live TrainState flatten to the same names."""
    return {_path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_sha256(tree: Any) -> str:
    """Digest over every array of `tree` in sorted path order: path, dtype, shape, bytes.

    Equal digests mean bit-identical arrays (the exact-resume tests compare these)."""
    h = hashlib.sha256()
    for path, leaf in sorted(flatten(jax.device_get(tree)).items()):
        x = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{path}|{x.dtype.str}|{x.shape}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def _model_leaves(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    flat = flatten(tree)
    return {
        path: (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
        for path, leaf in flat.items()
        if path.split("/", 1)[0] in MODEL_COLLECTIONS
    }


def mismatches(saved: Any, template: Any) -> list[str]:
    """Human-readable differences in params/batch_stats/ema between a checkpoint and a
    template."""
    have, want = _model_leaves(saved), _model_leaves(template)
    lines = []
    order = lambda path: (MODEL_COLLECTIONS.index(path.split("/", 1)[0]), path)  # params first
    for path in sorted(have.keys() | want.keys(), key=order):
        if path not in have:
            lines.append(f"  {path}: missing in checkpoint (model expects {want[path][0]})")
        elif path not in want:
            lines.append(f"  {path}: in checkpoint {have[path][0]}, not in this model")
        elif have[path] != want[path]:
            lines.append(
                f"  {path}: checkpoint {have[path][0]} {have[path][1]}, "
                f"model {want[path][0]} {want[path][1]}"
            )
    return lines


def _check_compatible(mngr: ocp.CheckpointManager, step: int, template: Any) -> None:
    """Compare the checkpoint's array metadata with `template` before Orbax restores it."""
    saved = mngr.item_metadata(step)["state"]
    if saved is None:
        return
    lines = mismatches(saved, template)
    if lines:
        shown = lines[:MAX_LISTED]
        if len(lines) > MAX_LISTED:
            shown.append(f"  ... and {len(lines) - MAX_LISTED} more")
        raise CheckpointMismatch(
            f"{mngr.directory}/{step}: checkpoint does not fit this model "
            f"({len(lines)} mismatched parameter arrays; was the config changed?):\n"
            + "\n".join(shown)
        )


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding skeleton to restore onto (the current mesh decides placement)."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _best_options(metric: str) -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda m: m[metric], best_mode="min", create=True
    )


class Checkpoints:
    """Both managers save asynchronously, but never at the same time.

    _one_manager_at_a_time: with several processes, a manager's background commit (and the
    pruning of an old best) synchronises processes through barriers; two managers doing that
    concurrently deadlocked a 2-process run (both processes waiting in different barriers).
    Each save therefore first waits for the other manager's pending save.
    """

    def __init__(self, workdir: str | Path, *, keep_latest: int = 2, best_metric: str = "loss"):
        workdir = Path(workdir).absolute()
        self.best_metric = best_metric
        self.latest = ocp.CheckpointManager(
            workdir / LATEST_DIR,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep_latest, create=True),
            item_handlers=_handlers(with_data=True),
        )
        self.best = ocp.CheckpointManager(
            workdir / BEST_DIR, options=_best_options(best_metric), item_handlers=_handlers()
        )

    def save_latest(self, step: int, state: Any, data_iterator: Any, meta: dict) -> None:
        """Every process takes part; each writes its own data-iterator file."""
        meta = {**meta, "process_count": jax.process_count()}
        self.best.wait_until_finished()  # see _one_manager_at_a_time
        self.latest.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        faults.maybe_kill("save", step)

    def save_best(self, step: int, state: Any, metrics: dict[str, float], meta: dict) -> None:
        """Offer a checkpoint to the best manager; it keeps only the lowest `best_metric`.

        A run resumed from an earlier `latest` checkpoint re-trains steps whose best candidate
        may already be saved (killed between the two saves); with exact resume that state is
        the same, so it is kept rather than written twice.
        """
        if step in self.best.all_steps():
            return
        self.latest.wait_until_finished()  # see _one_manager_at_a_time
        self.best.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            metrics={k: float(v) for k, v in metrics.items()},
            force=True,
        )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore_latest(self, state: Any, data_iterator: Any) -> tuple[Any, dict] | None:
        """Restore onto `state`'s shardings (any device count) and, when the checkpoint was
        written by as many processes as run now, the data iterator too.

        Each process saved its own iterator position; with another process count there is
        no file per process to read, so the iterator is left alone and the returned meta
        says `data_restored: False` (the caller repositions it).
        """
        step = self.latest.latest_step()
        if step is None:
            return None
        saved = self.latest.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        same_processes = int(saved["meta"].get("process_count", 1)) == jax.process_count()
        items = {
            "state": ocp.args.StandardRestore(abstract_like(state)),
            "meta": ocp.args.JsonRestore(),
        }
        if same_processes:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        _check_compatible(self.latest, step, state)
        restored = self.latest.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], {**restored["meta"], "data_restored": same_processes}

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def _handlers(with_data: bool = False) -> dict[str, Any]:
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    if with_data:
        handlers["data"] = grain.checkpoint.CheckpointHandler()
    return handlers


def _open(workdir: str | Path, which: str, best_metric: str = "loss") -> ocp.CheckpointManager:
    """Read-only manager over the `best` or `latest` checkpoints; says so when there are none."""
    if which not in ("best", "latest"):
        raise ValueError(f"checkpoint: expected 'best' or 'latest', got {which!r}")
    directory = Path(workdir).absolute() / (BEST_DIR if which == "best" else LATEST_DIR)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: no checkpoints in this workdir; train first with "
            f"`python -m agr_jax.train --config ... --workdir {workdir}`"
        )
    options = _best_options(best_metric) if which == "best" else None
    handlers = _handlers(with_data=which == "latest")
    mngr = ocp.CheckpointManager(directory, options=options, item_handlers=handlers)
    if mngr.latest_step() is None:
        mngr.close()
        raise FileNotFoundError(
            f"{directory}: no complete checkpoint found (an interrupted save leaves only a "
            "temporary directory, which is ignored)"
        )
    return mngr


def require_checkpoint(workdir: str | Path, which: str = "best") -> int:
    """The step of the `which` checkpoint; FileNotFoundError saying why when there is none."""
    mngr = _open(workdir, which)
    try:
        return _step_of(mngr, which)
    finally:
        mngr.close()


def _step_of(mngr: ocp.CheckpointManager, which: str) -> int:
    step = mngr.best_step() if which == "best" else mngr.latest_step()
    return mngr.latest_step() if step is None else step


def restore_for_inference(
    workdir: str | Path, state: Any, which: str = "best", best_metric: str = "loss"
) -> tuple[Any, dict]:
    """Restore `state` from the best (or latest) checkpoint of `workdir`, with its metadata."""
    mngr = _open(workdir, which, best_metric)
    try:
        step = _step_of(mngr, which)
        _check_compatible(mngr, step, state)
        restored = mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_like(state)),
                meta=ocp.args.JsonRestore(),
            ),
        )
    finally:
        mngr.close()
    return restored["state"], restored["meta"]


def restore_raw(workdir: str | Path, which: str = "latest") -> tuple[dict, dict]:
    """(state as a dict of arrays, meta) as saved, without a model; meta gains
    `checkpoint_step`."""
    mngr = _open(workdir, which)
    try:
        step = _step_of(mngr, which)
        restored = mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
            ),
        )
    finally:
        mngr.close()
    return restored["state"], {**(restored["meta"] or {}), "checkpoint_step": int(step)}


def describe(workdir: str | Path, which: str = "latest") -> dict[str, Any]:
    """Facts about a workdir's checkpoint, restored as host arrays (no model needed).

    `params_sha256` is `tree_sha256(params)`: equal digests mean bit-identical parameters.
    """
    workdir = Path(workdir)
    state, meta = restore_raw(workdir, which)
    info: dict[str, Any] = {
        "workdir": str(workdir),
        "checkpoint": which,
        "step": int(meta["checkpoint_step"]),
        "param_count": int(sum(np.size(x) for x in jax.tree.leaves(state["params"]))),
        "params_sha256": tree_sha256(state["params"]),
        "state_sha256": tree_sha256(state),
        "skipped_nonfinite": int(meta.get("skipped_nonfinite", 0)),
    }
    config_path = workdir / "config.json"
    info["config_name"] = (
        json.loads(config_path.read_text()).get("name") if config_path.exists() else None
    )
    info.update(_best_summary(workdir))
    return info


def _best_summary(workdir: Path, metric: str = "loss") -> dict[str, Any]:
    try:
        mngr = _open(workdir, "best", metric)
    except FileNotFoundError:
        return {"best_step": None, "best_metric": None}
    try:
        step = _step_of(mngr, "best")
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    finally:
        mngr.close()
    value = (meta or {}).get("val", {}).get(metric)
    return {"best_step": int(step), "best_metric": {f"val_{metric}": value}}
