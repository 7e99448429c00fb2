"""Orbax checkpoints: `latest` (resume point, with the grain iterator) and `best` (by val loss).

Two managers keep the two roles independent: pruning old `latest` checkpoints can never
delete the best one, and the best one never carries (or needs) data-iterator state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

LATEST_DIR = "checkpoints"
BEST_DIR = "best"


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
            item_names=("state", "data", "meta"),
            item_handlers={"data": grain.checkpoint.CheckpointHandler()},
        )
        self.best = ocp.CheckpointManager(
            workdir / BEST_DIR, options=_best_options(best_metric), item_names=("state", "meta")
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

    def save_best(self, step: int, state: Any, metrics: dict[str, float], meta: dict) -> None:
        """Offer a checkpoint to the best manager; it keeps only the lowest `best_metric`."""
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
        restored = self.latest.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], {**restored["meta"], "data_restored": same_processes}

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def restore_for_inference(
    workdir: str | Path, state: Any, which: str = "best", best_metric: str = "loss"
) -> tuple[Any, dict]:
    """Restore `state` from the best (or latest) checkpoint of `workdir`, with its metadata."""
    if which not in ("best", "latest"):
        raise ValueError(f"checkpoint: expected 'best' or 'latest', got {which!r}")
    directory = Path(workdir).absolute() / (BEST_DIR if which == "best" else LATEST_DIR)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: no checkpoints in this workdir; train first with "
            f"`python -m agr_jax.train --config ... --workdir {workdir}`"
        )
    options = _best_options(best_metric) if which == "best" else None
    mngr = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    step = mngr.best_step() if which == "best" else mngr.latest_step()
    if step is None:
        raise FileNotFoundError(f"{directory}: no complete checkpoint found")
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(state)), meta=ocp.args.JsonRestore()
        ),
    )
    mngr.close()
    return restored["state"], restored["meta"]
