"""The pure train/eval steps on a tiny model: loss goes down, state advances, dtypes hold."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import FAST_COMPILE

from agr_jax import models, tasks
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import create_train_state, ema_decay_at, eval_variables
from agr_jax.train.step import make_eval_step, make_train_step, mean_over_devices

SPEC = tasks.TaskSpec()
jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)  # tiny model: compile-bound
OPT = {"name": "adam", "learning_rate": 3e-3, "schedule": "constant"}


def _batch(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, n)
    race = rng.integers(0, 5, n)
    age = rng.integers(1, 90, n).astype(np.float32)
    image = rng.normal(size=(n, size, size, 3)).astype(np.float32) * 0.1
    image[..., 0] += gender[:, None, None]  # learnable signal
    image[..., 1] += race[:, None, None] / 4
    image[..., 2] += age[:, None, None] / 90
    return {
        "image": image,
        "age": age,
        "gender": gender.astype(np.int32),
        "race": race.astype(np.int32),
    }


def _setup(dtype="float32", optimizer=OPT):
    model = models.build(
        "ror", outputs=SPEC.output_sizes(), width=4, stage_sizes=(1, 1), dtype=dtype
    )
    tx = make_optimizer(optimizer, 100)
    state = create_train_state(model, tx, (32, 32, 3), seed=0, compiler_options=FAST_COMPILE)
    return model, tx, state


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loss_decreases_and_step_counts(dtype):
    model, tx, state = _setup(dtype)
    step = jit(make_train_step(model, tx, SPEC), donate_argnums=0)
    batch = _batch()
    losses = []
    for _ in range(30):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert int(state.step) == 30
    assert losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(losses))
    assert m["loss"].dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))


def test_batch_stats_update_in_training():
    model, tx, state = _setup()
    before = jax.tree.map(np.asarray, state.batch_stats)
    state, _ = jit(make_train_step(model, tx, SPEC))(state, _batch())
    changed = jax.tree.map(
        lambda a, b: not np.allclose(a, b), before, jax.device_get(state.batch_stats)
    )
    assert any(jax.tree.leaves(changed))


def test_same_seed_same_result():
    def run():
        model, tx, state = _setup()
        step = jit(make_train_step(model, tx, SPEC))
        for i in range(3):
            state, _ = step(state, _batch(seed=i))
        return jax.device_get(state.params)

    a, b = run(), run()
    assert all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_eval_step_predictions_in_human_units():
    model, _, state = _setup()
    out = jit(make_eval_step(model, SPEC))(state, _batch(n=8))
    assert out["age_pred"].shape == (8,)
    assert np.all((out["age_pred"] >= 0) & (out["age_pred"] <= SPEC.max_age))
    assert set(np.unique(out["gender_pred"])) <= {0, 1}
    np.testing.assert_allclose(np.sum(out["race_prob"], -1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sgd"])
def test_every_optimizer_descends_a_quadratic(name):
    cfg = {**OPT, "name": name, "learning_rate": 0.05, "schedule": "cosine", "weight_decay": 1e-4}
    tx = make_optimizer(cfg, 200)
    params = {"w": jnp.full((3,), 2.0)}
    opt_state = tx.init(params)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(p["w"] ** 2)))
    for _ in range(50):
        updates, opt_state = tx.update(grad(params), opt_state, params)
        params = optax.apply_updates(params, updates)
    assert float(jnp.sum(params["w"] ** 2)) < 12.0 * 0.5


def test_bad_optimizer_names_the_key():
    with pytest.raises(ValueError, match="optimizer.name"):
        make_optimizer({**OPT, "name": "lion9000"}, 10)
    with pytest.raises(ValueError, match="optimizer.schedule"):
        make_optimizer({**OPT, "schedule": "zigzag"}, 10)


def test_ema_tracks_params_and_is_what_eval_uses():
    model = models.build("ror", outputs=SPEC.output_sizes(), width=4, stage_sizes=(1, 1))
    tx = make_optimizer(OPT, 100)
    state = create_train_state(model, tx, (32, 32, 3), seed=0, ema=True,
                               compiler_options=FAST_COMPILE)
    assert jax.eval_shape(lambda: create_train_state(model, tx, (32, 32, 3), seed=0)).ema is None
    step = jit(make_train_step(model, tx, SPEC, ema_decay=0.9))
    batch = _batch()
    for _ in range(3):
        before = jax.device_get(state)
        state, _ = step(state, batch)
    d = float(ema_decay_at(0.9, jnp.asarray(2)))  # ramped: (1 + 2) / (10 + 2) < 0.9
    assert d == pytest.approx(0.25)
    expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, before.ema["params"],
                            jax.device_get(state.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 jax.device_get(state.ema["params"]), expected)
    assert eval_variables(state) is state.ema
    # Evaluation scores the averaged variables, not the raw ones.
    eval_step = jit(make_eval_step(model, SPEC))
    raw = state.replace(ema=None)
    apply = jit(model.apply, static_argnames="train")
    averaged = apply(state.ema, batch["image"], train=False)[0]["gender"]
    np.testing.assert_allclose(eval_step(state, batch)["gender_prob"],
                               jax.nn.softmax(averaged), rtol=1e-5, atol=1e-6)
    assert not np.allclose(eval_step(state, batch)["loss"], eval_step(raw, batch)["loss"])


@pytest.mark.parametrize("flat", [True, False])
def test_mean_over_devices_matches_per_leaf_means(flat):
    """The flat form (one all-reduce, the CPU default) is the same per-leaf mean, dtypes kept."""
    rng = np.random.default_rng(0)
    tree = {
        "conv": {"kernel": rng.normal(size=(4, 3, 3, 2, 5)).astype(np.float32)},
        "bias": rng.normal(size=(4, 5)).astype(np.float32),
        "half": rng.normal(size=(4, 7)).astype(jnp.bfloat16),
        "scalar": rng.normal(size=(4,)).astype(np.float32),
    }

    def mean(t):
        return mean_over_devices(t, "devices", flat=flat)

    out = jax.vmap(mean, axis_name="devices")(tree)
    for path, leaf in jax.tree.leaves_with_path(tree):
        got = functools.reduce(lambda t, k: t[k.key], path, out)
        assert got.dtype == leaf.dtype, path
        want = np.broadcast_to(np.mean(np.asarray(leaf, np.float32), 0), leaf.shape)
        tol = 1e-2 if leaf.dtype == jnp.bfloat16 else 1e-6  # per leaf: a bf16 mean in bf16
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=tol, atol=tol)
    jaxpr = str(jax.make_jaxpr(jax.vmap(mean, axis_name="devices"))(tree))
    assert jaxpr.count("psum") == (1 if flat else 4)
    assert mean_over_devices(tree, None) is tree
