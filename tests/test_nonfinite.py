"""Non-finite guard: stop with step and task (keeping the last good checkpoint), or skip and count.

A tiny test trunk (1x1 conv + BatchNorm) stands in for a real backbone so that the loop-level
tests compile in about a second.
"""

import json
import math
import runpy
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agr_jax import models, tasks
from agr_jax.train import checkpoint, loop
from agr_jax.train import input as input_lib
from agr_jax.train.nonfinite import NonFiniteError, NonFiniteGuard
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import create_train_state
from agr_jax.train.step import make_train_step

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"
SPEC = tasks.TaskSpec()


class TinyTrunk(nn.Module):
    width: int = 4
    dtype: object = jnp.float32
    param_dtype: object = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(self.width, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name)(x)
        return nn.relu(x)


@pytest.fixture
def tiny_backbone(monkeypatch):
    monkeypatch.setitem(models.BACKBONES, "tiny", TinyTrunk)


def _batch(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, size, size, 3)).astype(np.float32),
        "age": rng.integers(1, 90, n).astype(np.float32),
        "gender": rng.integers(0, 2, n).astype(np.int32),
        "race": rng.integers(0, 5, n).astype(np.int32),
    }


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.fixture(scope="module")
def steps():
    model = models.MultiTaskModel(
        backbone=TinyTrunk(),
        head=models.MultiTaskHead(outputs=SPEC.output_sizes(), hidden=(8,)),
    )
    tx = make_optimizer({"name": "adam", "learning_rate": 1e-2, "schedule": "constant"}, 10)
    state = create_train_state(model, tx, (16, 16, 3), seed=0)
    skip = jax.jit(make_train_step(model, tx, SPEC, skip_nonfinite=True))
    stop = jax.jit(make_train_step(model, tx, SPEC))
    return state, skip, stop


@pytest.mark.parametrize("poison", ["age", "image"])
def test_skip_keeps_the_previous_state_and_flags_the_step(steps, poison):
    state, skip, _ = steps
    bad = _batch()
    bad[poison] = np.full_like(bad[poison], np.inf if poison == "image" else np.nan)
    new, metrics = skip(state, bad)
    assert float(metrics["nonfinite"]) == 1.0
    assert int(new.step) == int(state.step) + 1
    assert _leaves_equal(new.params, state.params)
    assert _leaves_equal(new.opt_state, state.opt_state)
    assert _leaves_equal(new.batch_stats, state.batch_stats)
    good, metrics = skip(new, _batch(seed=1))
    assert float(metrics["nonfinite"]) == 0.0
    assert not _leaves_equal(good.params, state.params)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(good.params))


def test_without_skip_the_step_applies_and_flags(steps):
    state, _, stop = steps
    bad = _batch()
    bad["age"][3] = np.nan  # one bad label is enough
    new, metrics = stop(state, bad)
    assert float(metrics["nonfinite"]) == 1.0 and math.isnan(float(metrics["loss_age"]))
    assert math.isfinite(float(metrics["loss_gender"]))
    assert not all(np.isfinite(x).all() for x in jax.tree.leaves(new.params))


def _metrics(**values):
    base = {"loss": 1.0, "loss_age": 0.1, "loss_gender": 0.5, "loss_race": 0.4,
            "grad_norm": 2.0, "nonfinite": 0.0}
    return {k: np.float32(v) for k, v in {**base, **values}.items()}


def test_guard_names_step_and_task():
    guard = NonFiniteGuard(skip=False, last_checkpoint=40)
    guard.check(41, _metrics())
    with pytest.raises(NonFiniteError) as err:
        guard.check(42, _metrics(loss=np.nan, loss_race=np.inf, grad_norm=np.nan, nonfinite=1))
    message = str(err.value)
    assert message.startswith("step 42: non-finite loss of task(s) race (loss_race=inf)")
    assert "last good checkpoint (step 40) is kept" in message
    assert "config.skip_nonfinite=True" in message
    with pytest.raises(NonFiniteError, match=r"step 7: non-finite gradient \(losses finite"):
        NonFiniteGuard(skip=False).check(7, _metrics(grad_norm=np.inf, nonfinite=1))


def test_guard_counts_skipped_steps_once():
    guard = NonFiniteGuard(skip=True, skipped=2)
    bad = _metrics(loss=np.nan, loss_age=np.nan, nonfinite=1)
    guard.check(5, bad)
    guard.check(5, bad)  # the loop may check a step twice (before a checkpoint, then late)
    guard.check(6, _metrics())
    guard.check(9, bad)
    assert guard.skipped == 4


# --------------------------------------------------------------------------- in the loop


class PoisonAt:
    """Wraps the train iterator: the `at`-th batch (1-based, = its step) gets NaN ages."""

    def __init__(self, iterator, at: int):
        self.it, self.at, self.read = iterator, at, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.it)
        self.read += 1
        if self.read == self.at:
            batch = {**batch, "age": np.full_like(batch["age"], np.nan)}
        return batch

    def get_state(self):
        return self.it.get_state()

    def set_state(self, state):
        self.it.set_state(state)


def _config(synthetic_dir, synthetic_tfds, **extra):
    c = runpy.run_path(str(QUICKSTART))["get_config"]()
    c.data.dir, c.data.tfds_dir = str(synthetic_dir), str(synthetic_tfds)
    c.data.image_size = 16
    c.model = {"name": "tiny", "width": 4, "head_hidden": (8,), "pooling": "avg", "dropout": 0.0}
    c.batch_size, c.eval_batch_size, c.num_epochs = 16, 32, 2
    c.checkpoint_every_steps, c.log_every_steps = 2, 1
    c.optimizer.warmup_steps = 0
    for key, value in extra.items():
        c[key] = value
    return c


@pytest.fixture
def poisoned(monkeypatch):
    real = input_lib.make_train_iterator
    monkeypatch.setattr(input_lib, "make_train_iterator",
                        lambda *a, **k: PoisonAt(real(*a, **k), at=5))


def test_loop_stops_with_step_and_task_and_keeps_last_good_checkpoint(
    tiny_backbone, poisoned, synthetic_dir, synthetic_tfds, tmp_path
):
    with pytest.raises(NonFiniteError, match=r"^step 5: non-finite loss of task\(s\) age") as err:
        loop.train_and_evaluate(_config(synthetic_dir, synthetic_tfds), tmp_path)
    assert "last good checkpoint (step 4) is kept" in str(err.value)
    info = checkpoint.describe(tmp_path)
    assert info["step"] == 4  # the step-6 save never happened
    state, _ = checkpoint.restore_raw(tmp_path, "latest")
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]


def test_loop_skips_counts_and_finishes(
    tiny_backbone, poisoned, synthetic_dir, synthetic_tfds, tmp_path
):
    loop.train_and_evaluate(_config(synthetic_dir, synthetic_tfds, skip_nonfinite=True), tmp_path)
    info = checkpoint.describe(tmp_path)
    assert info["skipped_nonfinite"] == 1 and info["step"] == 12
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    flagged = [r["step"] for r in rows if r.get("train/nonfinite") == 1.0]
    assert flagged == [5]
    counts = [r["train/skipped_nonfinite"] for r in rows if "train/skipped_nonfinite" in r]
    assert counts == [1, 1]  # at the end of each epoch (steps 6 and 12)
