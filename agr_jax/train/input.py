"""From `config.data` to grain datasets: find or build the prepared TFDS set, then pipelines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import ml_collections

from agr_jax.data import decoded_cache, pipeline, prepare, synthetic, tfds_builders

log = logging.getLogger(__name__)


def _age_range(data: ml_collections.ConfigDict) -> tuple[int, int] | None:
    lo, hi = int(data.get("min_age", -1)), int(data.get("max_age", -1))
    if lo < 0 and hi < 0:
        return None
    return (max(lo, 0), hi if hi >= 0 else 10_000)


def resolve_tfds_dir(config: ml_collections.ConfigDict, workdir: str | Path) -> Path:
    """Prepared dataset directory; generates the synthetic set and/or prepares it when needed.

    Process 0 does the work; other processes wait for it (multi-host runs share a filesystem).
    """
    workdir = Path(workdir)
    data = config.data
    out = Path(data.tfds_dir) if data.get("tfds_dir") else workdir / "tfds"
    if jax.process_index() == 0:
        source = data.get("dir")
        name = data.get("name", "utkface")
        if not source and name != "utkface":
            raise ValueError(f"config.data.dir: the {name} dataset needs its root folder")
        if not source:
            source = workdir / "synthetic_utkface"
            if not (source.exists() and any(source.glob("*.jpg"))):
                log.info(
                    "data.dir unset: generating %d synthetic faces in %s",
                    data.synthetic_num,
                    source,
                )
                synthetic.generate(source, num=int(data.synthetic_num), seed=int(data.split_seed))
        report = prepare.prepare(
            source,
            out,
            seed=int(data.split_seed),
            ratios=tuple(data.split_ratios),
            age_range=_age_range(data),
            dataset=name,
            folds=int(data.get("folds", 0)),
            fold=int(data.get("fold", 0)),
            **({"min_face_score": float(data.min_face_score)}
               if data.get("min_face_score") is not None else {}),
        )
        # A fresh build lists every rejected file; a reused one just summarises.
        log.info("dataset %s:\n%s", out, report.summary() if report.reused else report.format())
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("agr_jax.prepare")
    return out


def make_train_iterator(
    config: ml_collections.ConfigDict, source: Any, local_batch_size: int,
    rows_only: bool = False, view_targets: pipeline.ViewTargets | None = None,
) -> Any:
    """`rows_only`: batches of row numbers and augmentation draws (the split on device);
    `view_targets`: each record's view and its targets (distillation)."""
    ds = pipeline.make_dataset(
        source,
        image_size=int(config.data.image_size),
        batch_size=local_batch_size,
        train=True,
        seed=int(config.seed),
        augment=dict(config.data.augment),
        augment_on=str(config.data.get("augment_on", "auto")),
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=int(config.data.worker_count),
        rows_only=rows_only,
        view_targets=view_targets,
    )
    return iter(ds)


def seek(iterator: Any, batches: int) -> None:
    """Move a (prefetched) train iterator past its first `batches` batches.

    Used when a checkpoint was written by another process count: the train pipeline gives
    each process its rows of every global batch, so batch `step` is the same global position
    whatever the count, and training continues on the data it would have seen.
    """
    state = json.loads(iterator.get_state())
    if set(state) != {"next_index"}:
        log.warning(
            "data iterator: cannot reposition a %s state; the data order restarts from the "
            "beginning of the (seeded) stream",
            sorted(state),
        )
        return
    iterator.set_state(json.dumps({"next_index": int(batches)}).encode())


def make_eval_batches(
    config: ml_collections.ConfigDict, source: Any, with_metadata: bool = False,
    rows_only: bool = False,
) -> Any:
    """One pass over `source` in eval batches (no augmentation, partial last batch kept);
    `rows_only`: row numbers and labels instead of images (the split on device)."""
    return pipeline.make_dataset(
        source,
        image_size=int(config.data.image_size),
        batch_size=int(config.eval_batch_size),
        train=False,
        seed=int(config.seed),
        augment=None,
        num_epochs=1,
        drop_remainder=False,
        worker_count=int(config.data.worker_count),
        rows_only=rows_only,
        **({"with_metadata": True} if with_metadata else {}),
    )


def load_split(tfds_dir: str | Path, split: str) -> Any:
    return tfds_builders.load_split(tfds_dir, split)


def load_training_split(
    config: ml_collections.ConfigDict, tfds_dir: str | Path, split: str
) -> Any:
    """A split the training loop reads every epoch: through its decoded cache where it fits."""
    return decoded_cache.maybe_cached(
        load_split(tfds_dir, split), tfds_dir, split, int(config.data.image_size),
        float(config.data.decoded_cache_gb),
    )
