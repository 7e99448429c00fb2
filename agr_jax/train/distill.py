"""Distillation: a student learns from a teacher's outputs as well as from the labels.

The teacher (any release folder or training run, `distill.teacher`) is run once over the
training crops in a fixed set of views: each (dy, dx) of `distill.shifts`, in student
pixels, as it is and mirrored. Its log-probabilities for gender and race and its age in years
are cached per (record, view) beside the prepared dataset (`teacher_cache`), so training
pays nothing for the teacher after the first run, and the train stream draws each record's
view from that set (`pipeline.ViewTargets`): the student always sees the pixels the teacher
saw, at its own resolution (shifts are scaled to the teacher's size and rounded; 64 -> 112 px
maps steps of 4 px to 7 exactly).

Loss per task: (1 - a) * label loss + a * teacher loss. Gender and race: the teacher term is
T^2 * KL(teacher_T || student_T) with both softened by the temperature T (Hinton et al. 2015);
age: the squared error against the teacher's age on the task's age/max_age scale (`age_alpha`
can differ from `alpha`: the teacher's age regresses to the mean as any MSE head does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from agr_jax import tasks
from agr_jax.data import decoded_cache, pipeline, tfds_builders
from agr_jax.train.device_augment import flip_pad_crop
from agr_jax.train.fixed_batches import padded_parts

log = logging.getLogger(__name__)

CACHE_DIR = "teacher_cache"


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    """The loss mix (`distill.alpha`, `age_alpha`, `temperature`) and the target layout."""

    alpha: float
    age_alpha: float
    temperature: float
    num_genders: int
    num_races: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, spec: tasks.TaskSpec
                    ) -> DistillSpec | None:
        d = config.get("distill", {})
        if not d or not d.get("teacher"):
            return None
        return cls(float(d.alpha), float(d.age_alpha), float(d.temperature),
                   spec.num_genders, spec.num_races)

    def split(self, targets: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """[B, K] targets -> gender and race log-probabilities, age in years."""
        g, r = self.num_genders, self.num_races
        return {"gender": targets[:, :g], "race": targets[:, g:g + r], "age": targets[:, g + r]}


def teacher_losses(outputs: Mapping[str, jnp.ndarray], targets: jnp.ndarray,
                   spec: tasks.TaskSpec, dspec: DistillSpec) -> dict[str, jnp.ndarray]:
    """Per-example float32 losses of the student's outputs against the teacher's targets."""
    teacher = dspec.split(targets.astype(jnp.float32))
    t = dspec.temperature
    out = {}
    for task in ("gender", "race"):
        student = jax.nn.log_softmax(outputs[task].astype(jnp.float32) / t)
        soft = jax.nn.log_softmax(teacher[task] / t)
        out[task] = t * t * jnp.sum(jnp.exp(soft) * (soft - student), axis=-1)
    if spec.age_mode != "regression":
        raise ValueError("distill: the teacher's age is a number of years; the student needs "
                         f"tasks.age_mode 'regression', got {spec.age_mode!r}")
    student_age = jax.nn.sigmoid(outputs["age"].astype(jnp.float32)[..., 0])
    error = student_age - teacher["age"] / spec.max_age
    out["age"] = jnp.abs(error) if spec.age_loss == "l1" else jnp.square(error)
    return out


def mix(label: Mapping[str, jnp.ndarray], teacher: Mapping[str, jnp.ndarray],
        dspec: DistillSpec) -> dict[str, jnp.ndarray]:
    share = {"gender": dspec.alpha, "race": dspec.alpha, "age": dspec.age_alpha}
    return {t: (1.0 - share[t]) * label[t] + share[t] * teacher[t] for t in label}


# The teacher pass.

def views_of(shifts: Any) -> np.ndarray:
    """int32 [V, 3] (flip, dy, dx): every (dy, dx) of `shifts`, as it is and mirrored."""
    pairs = [tuple(int(v) for v in pair) for pair in shifts]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"distill.shifts: expected (dy, dx) pairs in student pixels, got "
                         f"{shifts!r}")
    return np.asarray([(flip, dy, dx) for dy, dx in pairs for flip in (0, 1)], np.int32)


def load_teacher(path: str | Path, checkpoint: str = "") -> Any:
    """A release folder (model.json) or a training workdir, as an inference `Bundle`."""
    from agr_jax.inference.load import load_workdir
    from agr_jax.inference.release import MODEL_JSON, read_release

    path = Path(path)
    if (path / MODEL_JSON).exists():
        return read_release(path)
    if (path / "config.json").exists():
        return load_workdir(path, checkpoint or None)
    raise FileNotFoundError(f"distill.teacher: {path} is neither a release folder "
                            f"({MODEL_JSON}) nor a training workdir (config.json)")


def teacher_identity(path: str | Path, bundle: Any) -> dict[str, Any]:
    """What names the teacher's outputs: its folder and weights (hash or checkpoint step)."""
    from agr_jax.inference.release import WEIGHTS, weights_sha256

    path = Path(path)
    if (path / WEIGHTS).exists():
        return {"release": str(path.resolve()), "weights_sha256": weights_sha256(path)}
    return {"workdir": str(path.resolve()), **{k: bundle.source.get(k)
                                                for k in ("checkpoint", "step")}}


def teacher_targets(bundle: Any, images: Any, views: np.ndarray, student_size: int,
                    batch_size: int = 128, dtype: str | None = None) -> np.ndarray:
    """float32 [N, V, K]: the teacher's log-probabilities (gender, race) and age in years for
    every record of `images` (batches of uint8 [n, T, T, 3] at the teacher's size, in record
    order) in every view, its shift scaled from the student's pixels to the teacher's."""
    from agr_jax.inference import precision

    size = int(bundle.image_size)
    scaled = views.copy()
    scaled[:, 1:] = np.rint(views[:, 1:] * size / student_size).astype(np.int32)
    wanted = dtype or precision.choose(bundle.compute_dtype, jax.default_backend())
    model = bundle.build_model(wanted)
    spec = bundle.task_spec
    variables = jax.device_put(bundle.variables)

    @jax.jit
    def forward(batch: jax.Array, flip_crop: jax.Array) -> jax.Array:
        outputs, _ = model.apply(variables, flip_pad_crop(batch, flip_crop), train=False)
        return jnp.concatenate([
            jax.nn.log_softmax(outputs["gender"].astype(jnp.float32)),
            jax.nn.log_softmax(outputs["race"].astype(jnp.float32)),
            tasks.age_years(outputs["age"], spec)[:, None]], axis=-1)

    chunks, start_time = [], time.perf_counter()
    for number, batch in enumerate(images, 1):
        if number % 20 == 0:
            done = sum(len(c) for c in chunks)
            log.info("teacher pass: %d records x %d views, %.0f records/s", done, len(views),
                     done / (time.perf_counter() - start_time))
        per_view = []
        for padded, n in padded_parts(np.asarray(batch, np.uint8), batch_size):
            rows = [np.asarray(forward(padded, np.broadcast_to(view, (batch_size, 3))))[:n]
                    for view in scaled]
            per_view.append(np.stack(rows, axis=1))
        chunks.append(np.concatenate(per_view))
    return np.concatenate(chunks).astype(np.float32)


def _key(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def teacher_cache(config: ml_collections.ConfigDict, tfds_dir: str | Path,
                  split: str = "train") -> pipeline.ViewTargets:
    """The teacher's targets for `split` in the views of `distill.shifts`: read from the cache
    beside the prepared dataset when one was made for this teacher, split, views and student
    size; computed and written (aside, then renamed in) otherwise. Process 0 computes."""
    d = config.distill
    views = views_of(d.shifts)
    student_size = int(config.data.image_size)
    bundle = load_teacher(d.teacher, str(d.get("teacher_checkpoint", "")))
    spec = tasks.TaskSpec.from_config(config.tasks)
    if bundle.task_spec.num_races != spec.num_races or \
            bundle.task_spec.num_genders != spec.num_genders:
        raise ValueError(f"distill.teacher {d.teacher}: {bundle.task_spec.num_genders} genders "
                         f"/ {bundle.task_spec.num_races} races, the student has "
                         f"{spec.num_genders} / {spec.num_races}")
    source = tfds_builders.load_split(tfds_dir, split)
    meta = {"teacher": teacher_identity(d.teacher, bundle), "split": split,
            "count": len(source), "build": decoded_cache.build_fingerprint(tfds_dir),
            "views": views.tolist(), "student_size": student_size,
            "teacher_size": int(bundle.image_size), "format": 1}
    folder = Path(d.get("cache_dir") or tfds_builders.resolve_dir(tfds_dir) / CACHE_DIR)
    path = folder / f"{split}_{_key(meta)}.npz"
    if jax.process_index() == 0 and not path.exists():
        start = time.perf_counter()
        at_teacher_size = decoded_cache.maybe_cached(
            source, tfds_dir, split, int(bundle.image_size), float(config.data.decoded_cache_gb))
        batches = pipeline.make_dataset(at_teacher_size, image_size=int(bundle.image_size),
                                        batch_size=int(d.batch_size), train=False, seed=0)
        targets = teacher_targets(bundle, (b["image"] for b in batches), views, student_size,
                                  int(d.batch_size))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, views=views, targets=targets, meta=json.dumps(meta))
        tmp.rename(path)
        log.info("teacher %s: %d %s records x %d views in %.1f s -> %s", d.teacher,
                 len(source), split, len(views), time.perf_counter() - start, path)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("agr_jax.teacher_cache")
    with np.load(path) as cached:
        if json.loads(str(cached["meta"])) != meta:
            raise ValueError(f"{path}: written for another teacher, split or views")
        log.info("teacher targets: %s (%d records x %d views)", path, len(source), len(views))
        return pipeline.ViewTargets(cached["views"], cached["targets"])
