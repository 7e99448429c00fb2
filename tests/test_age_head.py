"""Age-head re-training (train/age_head.py): the kept head is chosen on validation, never
raises the overall MAE, and the original head stays when no epoch qualifies."""

import types

import jax
import numpy as np

from agr_jax import tasks
from agr_jax.train import age_head


def _problem(seed=0, n=3000, dim=8):
    """Features that determine the age, with the crowded middle and rare extremes of UTKFace."""
    rng = np.random.default_rng(seed)
    ages = np.clip(np.concatenate([rng.normal(30, 8, int(n * 0.85)),
                                   rng.uniform(1, 19, int(n * 0.08)),
                                   rng.uniform(60, 95, n - int(n * 0.85) - int(n * 0.08))]),
                   1, 100).astype(np.float32)
    direction = rng.normal(size=dim).astype(np.float32)
    features = np.maximum(np.outer(ages / 100, direction) + 0.05 * rng.normal(size=(n, dim)),
                          0).astype(np.float32)
    return features, ages


def _bundle(hidden=(16,)):
    spec = tasks.TaskSpec()
    head = age_head.TaskMLP(num_outputs=1, hidden=hidden)
    params = head.init(jax.random.key(0), np.zeros((1, 8), np.float32), train=False)["params"]
    return types.SimpleNamespace(task_spec=spec, model={"head_hidden": hidden},
                                 variables={"params": {"head": {"age": params}}})


def test_kept_head_lowers_the_extremes_without_raising_the_overall_mae():
    x, ages = _problem(0)
    vx, vages = _problem(1, n=1000)
    params, report = age_head.retrain(_bundle(), x, ages, vx, vages, epochs=8,
                                      learning_rate=3e-3)
    before, after = report["validation_before"], report["validation_after"]
    assert report["kept_epoch"] > 0
    assert after["overall"] <= before["overall"]
    assert (after["young"] + after["old"]) < (before["young"] + before["old"])
    assert len(report["history"]) == 9 and report["history"][report["kept_epoch"]] == after
    assert set(params) == {"hidden_0", "logits"}


def test_original_head_stays_when_no_epoch_qualifies():
    x, ages = _problem(0, n=600)
    vx, vages = _problem(1, n=300)
    bundle = _bundle()
    params, report = age_head.retrain(bundle, x, ages, vx, vages, epochs=2, learning_rate=0.0)
    assert report["kept_epoch"] == 0
    original = bundle.variables["params"]["head"]["age"]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(original), strict=True):
        np.testing.assert_array_equal(a, b)
