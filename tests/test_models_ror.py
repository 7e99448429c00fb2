"""RoR backbone and the shared multi-task heads: shapes, dtypes, contract."""

import functools

import jax
import jax.numpy as jnp
import pytest
from conftest import FAST_COMPILE

from agr_jax import models

OUTPUTS = {"age": 1, "gender": 2, "race": 5}


def _tiny(**kw):
    return models.build("ror", outputs=OUTPUTS, width=4, stage_sizes=(1, 1), **kw)


def _jit(fn):
    """Jitted with cheap compiles: op by op, every primitive of the model compiles alone."""
    return functools.partial(jax.jit, compiler_options=FAST_COMPILE,
                             static_argnames=("train", "mutable"))(fn)


def test_contract_outputs_and_features():
    model = _tiny()
    x = jnp.zeros((2, 32, 32, 3))
    variables = _jit(model.init)(jax.random.key(0), x, train=False)
    (logits, features) = _jit(model.apply)(variables, x, train=False)
    assert {k: v.shape for k, v in logits.items()} == {
        "age": (2, 1),
        "gender": (2, 2),
        "race": (2, 5),
    }
    assert features["pre_logits"].shape == (2, 4 * 2 * 4)
    assert all(v.dtype == jnp.float32 for v in logits.values())


def test_three_shortcut_levels_exist():
    variables = jax.eval_shape(
        lambda: _tiny().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    trunk = variables["params"]["backbone"]
    assert "network_shortcut" in trunk
    assert {"stage1_shortcut", "stage2_shortcut"} <= set(trunk)
    assert "proj" in trunk["stage1_block1"]  # block-level projection where widths change


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dtype_threads_through_and_params_stay_float32(dtype):
    model = _tiny(dtype=dtype)
    x = jnp.ones((2, 32, 32, 3))
    variables = _jit(model.init)(jax.random.key(0), x, train=False)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    (logits, feats), _ = _jit(model.apply)(variables, x, train=True, mutable=("batch_stats",))
    assert feats["feature_map"].dtype == jnp.dtype(dtype)
    assert logits["race"].dtype == jnp.float32
    assert all(jnp.isfinite(v).all() for v in logits.values())


def test_unknown_backbone_names_the_key():
    with pytest.raises(ValueError, match="model.name"):
        models.build("nope", outputs=OUTPUTS)


def test_average_pooling_and_bad_pooling():
    x = jnp.ones((1, 32, 32, 3))
    model = _tiny(pooling="avg")
    variables = _jit(model.init)(jax.random.key(0), x, train=False)
    _jit(model.apply)(variables, x, train=False)
    with pytest.raises(ValueError, match="model.pooling"):
        jax.eval_shape(lambda: _tiny(pooling="median").init(jax.random.key(0), x, train=False))
