"""Every registered backbone under the shared heads: builds, runs in float32 and bfloat16,
trains two steps through the real train step (tiny widths so CPU compiles stay short)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CHEAP_COMPILE

from agr_jax import models, tasks
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import TrainState
from agr_jax.train.step import make_train_step

SPEC = tasks.TaskSpec()
# Compile-bound (two programs per backbone, run once or twice): XLA's cheapest CPU compile.
cheap_jit = functools.partial(jax.jit, compiler_options=CHEAP_COMPILE)
OPT = {"name": "adam", "learning_rate": 1e-3, "schedule": "constant"}

# name -> (image size, tiny constructor options). Inception nets need >= 75 px (VALID stems).
TINY = {
    "ror": (32, dict(width=4, stage_sizes=(1, 1))),
    "resnet18": (32, dict(width=1 / 16)),
    "resnet34": (32, dict(width=1 / 16, stage_sizes=(1, 1, 2, 1))),
    "resnet50": (32, dict(width=1 / 16, stage_sizes=(1, 1, 1, 1))),
    "xception": (32, dict(width=1 / 16, middle_blocks=1)),
    "inception_resnet_v1": (75, dict(width=1 / 16, repeats=(1, 1, 1), embedding_size=8)),
    "inception_v3": (75, dict(width=1 / 16, mixed_blocks=5)),  # through mixed4 (1x7/7x1)
    "mobilenet": (32, dict(alpha=0.125, num_blocks=6)),
    "vgg19": (32, dict(width=1 / 16)),
    "mobilenet_transformer": (
        32,
        dict(alpha=0.125, num_blocks=6, d_model=8, num_layers=1, num_heads=2, mlp_dim=16),
    ),
    "shallow_lrn": (32, dict(width=1 / 8, grayscale=True)),
    "resblock_cnn": (32, dict(width=1 / 8, alpha_dropout_tasks=("age",), dropout=0.2)),
}


def test_every_registered_backbone_has_a_tiny_variant_here():
    assert set(TINY) == set(models.available())


def _batch(size, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(size=(n, size, size, 3)).astype(np.float32),
        "age": rng.integers(1, 90, n).astype(np.float32),
        "gender": rng.integers(0, 2, n).astype(np.int32),
        "race": rng.integers(0, 5, n).astype(np.int32),
    }


@pytest.mark.parametrize("name", sorted(TINY))
def test_backbone_runs_in_float32_and_trains_two_steps_in_bfloat16(name):
    """Two compiles per backbone: float32 init+forward, then the bfloat16 train step."""
    size, kw = TINY[name]
    images = _batch(size)["image"]
    model = models.build(name, outputs=SPEC.output_sizes(), **kw)
    (logits, feats), variables = cheap_jit(lambda k, x: model.init_with_output(k, x, train=False))(
        jax.random.key(0), images
    )
    assert {k: v.shape for k, v in logits.items()} == {
        "age": (4, 1),
        "gender": (4, 2),
        "race": (4, 5),
    }
    assert all(v.dtype == jnp.float32 and bool(jnp.isfinite(v).all()) for v in logits.values())
    assert feats["pre_logits"].ndim == 2
    if name == "inception_resnet_v1":
        norms = jnp.linalg.norm(feats["embedding"], axis=-1)
        np.testing.assert_allclose(norms, 1.0, rtol=1e-2)

    # The same float32 parameters drive the bfloat16-compute model through the train step.
    bf16 = models.build(name, outputs=SPEC.output_sizes(), dtype="bfloat16", **kw)
    tx = make_optimizer(OPT, 10)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(variables["params"]),
        rng=jax.random.key_data(jax.random.key(1)),
    )
    step = cheap_jit(make_train_step(bf16, tx, SPEC))
    for i in range(2):
        new_state, m = step(state, _batch(size, seed=i))
        assert np.isfinite(float(m["loss"])), name
        state = new_state
    assert int(state.step) == 2
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), variables["params"], state.params)
    assert all(jax.tree.leaves(moved["head"])) and any(jax.tree.leaves(moved["backbone"]))


def test_resnet_without_stem_pool_keeps_twice_the_resolution():
    """`stem_pool=False`: stage 1 at input/2 (the small-face layout), same parameters."""
    x = jnp.zeros((1, 32, 32, 3))
    maps, params = {}, {}
    for pool in (True, False):
        backbone = models.BACKBONES["resnet18"](width=1 / 16, stem_pool=pool)
        variables = jax.eval_shape(lambda b=backbone: b.init(jax.random.key(0), x))
        maps[pool] = jax.eval_shape(lambda v, b=backbone: b.apply(v, x), variables).shape
        params[pool] = jax.tree.map(lambda a: a.shape, variables["params"])
    assert maps[True][1:3] == (1, 1) and maps[False][1:3] == (2, 2)
    assert params[True] == params[False]
