"""Per-submodule learning rates and freezing (optax.multi_transform), and learned task weights,
through the real train step on a tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_COMPILE

from agr_jax import models, tasks
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import create_train_state
from agr_jax.train.step import make_train_step

SIZE = 16


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(size=(n, SIZE, SIZE, 3)).astype(np.float32),
        "age": rng.integers(1, 90, n).astype(np.float32),
        "gender": rng.integers(0, 2, n).astype(np.int32),
        "race": rng.integers(0, 5, n).astype(np.int32),
    }


def _size(tree) -> int:
    return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def trained(fast_jit):
    """Adam with the backbone frozen, learned task weights; three steps. One compile."""
    spec = tasks.TaskSpec(weighting="learned")
    model = models.build(
        "ror", outputs=spec.output_sizes(), width=4, stage_sizes=(1,), **spec.model_options()
    )
    cfg = {
        "name": "adam",
        "learning_rate": 0.05,
        "schedule": "constant",
        "grad_clip": 1.0,
        "lr_multipliers": (("backbone/*", 0.0), ("head/race/*", 0.1)),
    }
    tx = make_optimizer(cfg, 10)
    state = create_train_state(model, tx, (SIZE, SIZE, 3), 0, compiler_options=FAST_COMPILE)
    initial = jax.device_get(state)
    step = fast_jit(make_train_step(model, tx, spec))
    history = []
    for i in range(3):
        state, m = step(state, _batch(i))
        history.append(jax.device_get(m))
    return initial, jax.device_get(state), history


def test_frozen_backbone_is_unchanged_and_has_no_optimizer_state(trained):
    initial, final, _ = trained
    for a, b in zip(
        jax.tree.leaves(initial.params["backbone"]),
        jax.tree.leaves(final.params["backbone"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    head_changed = jax.tree.map(
        lambda a, b: not np.array_equal(a, b), initial.params["head"], final.params["head"]
    )
    assert all(jax.tree.leaves(head_changed))
    # Adam keeps float mu and nu per trainable element (+ int step counts): none for the backbone.
    trainable = _size(final.params) - _size(final.params["backbone"])
    moments = [x for x in jax.tree.leaves(final.opt_state) if np.issubdtype(x.dtype, np.floating)]
    assert sum(int(np.size(x)) for x in moments) == 2 * trainable


def test_learned_task_weights_move(trained):
    initial, final, history = trained
    s0, s1 = initial.params["loss_log_vars"], final.params["loss_log_vars"]
    assert set(s1) == set(tasks.TASKS)
    assert all(float(s0[t]) == 0.0 for t in tasks.TASKS)
    assert all(abs(float(s1[t])) > 1e-3 for t in tasks.TASKS)
    assert {"task_weight_age", "task_weight_gender", "task_weight_race"} <= set(history[-1])
    np.testing.assert_allclose(history[-1]["task_weight_age"], np.exp(-s1["age"]), rtol=0.2)


@pytest.mark.parametrize("mult", [0.1, 0.5])
def test_lr_multiplier_scales_the_update(mult):
    params = {
        "backbone": {"conv": {"kernel": jnp.ones((3, 3))}},
        "head": {"age": {"logits": {"kernel": jnp.ones((4,))}}, "race": {"b": jnp.ones((2,))}},
    }
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    cfg = {"name": "sgd", "learning_rate": 0.1, "schedule": "constant", "momentum": 0.0}
    plain = make_optimizer(cfg, 10)
    scaled = make_optimizer({**cfg, "lr_multipliers": (("backbone/*", mult),)}, 10)
    ref, _ = plain.update(grads, plain.init(params), params)
    upd, _ = scaled.update(grads, scaled.init(params), params)
    np.testing.assert_allclose(
        upd["backbone"]["conv"]["kernel"], mult * ref["backbone"]["conv"]["kernel"], rtol=1e-6
    )
    np.testing.assert_allclose(
        upd["head"]["age"]["logits"]["kernel"], ref["head"]["age"]["logits"]["kernel"]
    )
    assert float(jnp.abs(ref["backbone"]["conv"]["kernel"]).min()) > 0


def test_first_matching_glob_wins_and_bad_multipliers_name_the_key():
    params = {"head": {"age": {"w": jnp.ones(2)}, "race": {"w": jnp.ones(2)}}}
    grads = jax.tree.map(jnp.ones_like, params)
    cfg = {"name": "sgd", "learning_rate": 1.0, "schedule": "constant", "momentum": 0.0}
    tx = make_optimizer({**cfg, "lr_multipliers": (("head/age/*", 0.0), ("head/*", 0.5))}, 10)
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(upd["head"]["age"]["w"], 0.0)
    np.testing.assert_allclose(upd["head"]["race"]["w"], -0.5)
    with pytest.raises(ValueError, match="optimizer.lr_multipliers"):
        make_optimizer({**cfg, "lr_multipliers": (("head/*",),)}, 10)
