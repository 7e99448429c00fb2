"""`init.recalibrate_bn_images`: a net whose BatchNorm was folded (statistics 0 / 1, as the
TF.js importer writes them) computes something else in training mode; recalibrated, its
inference-mode output is unchanged and training mode on the measured images agrees with it.
The training loop applies it to a fresh run before the first step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from agr_jax import models
from agr_jax.train import bn_recalibration, checkpoint
from agr_jax.train.checkpoint import flatten

SIZE = 32


def folded_model():
    """A tiny MobileNet with random BN scale/bias over statistics 0 / 1 (a folded import)."""
    model = models.build("mobilenet", outputs={"age": 1, "gender": 2, "race": 5},
                         alpha=0.125, num_blocks=2, conv_impl="xla")  # fmt: skip
    variables = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    rng = np.random.default_rng(1)

    def randomise(path, leaf):
        name = jax.tree_util.keystr(path)
        if "'scale'" in name:
            return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), leaf.dtype)
        if "'bias'" in name and "BatchNorm" in name:
            return jnp.asarray(rng.normal(0.0, 0.5, leaf.shape), leaf.dtype)
        return leaf

    params = jax.tree_util.tree_map_with_path(randomise, variables["params"])
    return model, {"params": params, "batch_stats": variables["batch_stats"]}


def images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


def inferred(model, variables, x):
    return np.asarray(model.apply(variables, x, train=False)[1]["feature_map"])


def test_recalibration_keeps_inference_and_makes_training_mode_agree():
    model, variables = folded_model()
    x = images(16, seed=2)
    gap = functools.partial(bn_recalibration.mode_gap, feature="feature_map")
    assert gap(model, variables, x) > 0.3
    out = bn_recalibration.recalibrate(model, variables, [x[:8], x[8:]])
    np.testing.assert_allclose(inferred(model, out, x), inferred(model, variables, x),
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    # Training mode normalises by the batch's statistics: on the measured batch, the same.
    assert gap(model, out, x) < 1e-3
    changed = [p for p, v in flatten(out["batch_stats"]).items()
               if not np.allclose(v, flatten(variables["batch_stats"])[p])]  # fmt: skip
    assert len(changed) == len(flatten(variables["batch_stats"]))


def test_statistics_over_batches_are_those_of_all_the_images():
    model, variables = folded_model()
    x = images(12, seed=3)
    split = bn_recalibration.measure(model, variables, [x[:4], x[4:]])
    whole = bn_recalibration.measure(model, variables, [x])
    for path, (mean, var) in whole.items():
        np.testing.assert_allclose(split[path][0], mean, rtol=1e-4, atol=1e-5, err_msg=path)
        np.testing.assert_allclose(split[path][1], var, rtol=1e-3, atol=1e-5, err_msg=path)


def test_strided_rows_spread_over_the_source():
    rows = bn_recalibration.strided_rows(list(range(100)), 5)
    assert [rows[i] for i in range(len(rows))] == [0, 24, 49, 74, 99]
    assert rows.__getitems__([0, 4]) == [0, 99]
    assert len(bn_recalibration.strided_rows(list(range(3)), 10)) == 3


def test_training_starts_from_the_recalibrated_statistics(tmp_path, tiny_config, synthetic_dir):
    """Phase 1 freezes the trunk, so its stored statistics after one step are the measured
    ones: those of the same images measured here, not the checkpoint's."""
    from agr_jax.train import input as input_lib
    from agr_jax.train.loop import build_model_and_spec, train_and_evaluate

    config = tiny_config(**{"data.dir": str(synthetic_dir), "total_steps": 1})
    workdir = tmp_path / "run"
    tfds_dir = input_lib.resolve_tfds_dir(config, workdir)
    model, _ = build_model_and_spec(config, tfds_dir)
    size = int(config.data.image_size)
    saved = dict(model.init(jax.random.key(5), jnp.zeros((1, size, size, 3)), train=False))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "init", jax.tree.map(np.asarray, saved))
    config.init.checkpoint = str(tmp_path / "init")
    config.init.recalibrate_bn_images = 40
    config.init.phases = ((1, (("backbone/*", 0.0),)), (0, ()))

    train_and_evaluate(config, workdir)
    state, _ = checkpoint.restore_raw(workdir)
    source = input_lib.load_training_split(config, tfds_dir, "train")
    calibration = bn_recalibration.calibration_images(config, source, 40)
    measured = bn_recalibration.measure(model, saved, calibration)
    stored = flatten(state["batch_stats"])
    trunk = {p: v for p, v in measured.items() if p[0] == "backbone"}
    assert trunk
    for path, (mean, var) in trunk.items():
        key = "/".join(path)
        np.testing.assert_allclose(stored[f"{key}/mean"], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stored[f"{key}/var"], var, rtol=1e-4, atol=1e-5)
        assert not np.allclose(mean, flatten(saved["batch_stats"])[f"{key}/mean"])
