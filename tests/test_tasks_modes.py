"""Age modes (regression, bins, ordinal) decode to years; bins/ordinal losses train;
learned task weights; config validation of the new keys."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from agr_jax import configuration, defaults, tasks
from agr_jax.models.heads import AlphaDropout, TaskMLP


def _spec(mode, bins="utkface9", **kw):
    return tasks.TaskSpec.from_config({"age_mode": mode, "age_bins": bins, **kw})


def test_presets_resolve_to_the_documented_bins():
    spec = _spec("bins")
    assert spec.num_age_bins == 9 and spec.output_sizes()["age"] == 9
    ages = jnp.array([0, 1, 5, 6, 12, 13, 34, 35, 61, 62, 116])
    np.testing.assert_array_equal(
        tasks.age_bin_labels(ages, spec), [0, 0, 0, 1, 1, 2, 4, 5, 7, 8, 8]
    )
    np.testing.assert_allclose(spec.age_bin_centres()[:2], [3.0, 9.0])  # 1-5, 6-12
    assert _spec("ordinal").output_sizes()["age"] == 8
    intervals = _spec("bins", "intervals4")
    np.testing.assert_allclose(intervals.age_bin_centres(), [15.0, 38.0, 53.0, 80.5])
    assert _spec("bins", "fairface9").num_age_bins == 9
    assert _spec("bins", "5year").num_age_bins == 24  # 0-4 ... 115-116
    assert _spec("bins", (0, 20, 40, 117)).num_age_bins == 3


@pytest.mark.parametrize("age", [3.0, 30.0, 70.0])
def test_every_age_mode_decodes_to_years(age):
    reg = tasks.TaskSpec()
    logit = jnp.log(age / reg.max_age) - jnp.log1p(-age / reg.max_age)
    np.testing.assert_allclose(tasks.age_years(logit[None, None], reg), [age], rtol=1e-4)

    bins = _spec("bins")
    k = int(tasks.age_bin_labels(jnp.array([age]), bins)[0])
    onehot = 50.0 * jax.nn.one_hot(jnp.array([k]), bins.num_age_bins)
    centre = float(bins.age_bin_centres()[k])
    np.testing.assert_allclose(tasks.age_years(onehot, bins), [centre], rtol=1e-4)
    # Expected value: equal mass on two bins decodes to the mean of their centres.
    two = jnp.zeros((1, 9)).at[0, 2].set(10.0).at[0, 3].set(10.0)
    c = bins.age_bin_centres()
    np.testing.assert_allclose(tasks.age_years(two, bins), [(c[2] + c[3]) / 2], rtol=1e-3)

    ordinal = _spec("ordinal")
    ranks = jnp.where(jnp.arange(8) < k, 10.0, -10.0)[None]
    np.testing.assert_allclose(tasks.age_years(ranks, ordinal), [centre])
    assert abs(centre - age) <= 30  # centres are in years, not indices


@pytest.mark.parametrize("mode", ["bins", "ordinal"])
def test_bin_and_ordinal_losses_are_finite_and_decrease(mode):
    spec = _spec(mode)
    rng = np.random.default_rng(0)
    ages = jnp.asarray(rng.integers(0, 100, 64), jnp.float32)
    feats = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32) + ages[:, None] / 50
    head = TaskMLP(spec.output_sizes()["age"], hidden=(16,), rank_consistent=mode == "ordinal")
    params = head.init(jax.random.key(0), feats, train=False)
    if mode == "ordinal":  # CORAL: one shared weight vector, K-1 biases
        assert params["params"]["logits"]["kernel"].shape == (16, 1)
        assert params["params"]["rank_biases"].shape == (8,)
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt):
        loss_fn = lambda p: jnp.mean(tasks.age_loss(head.apply(p, feats, train=False), ages, spec))
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), opt, loss

    losses = []
    for _ in range(60):
        params, opt, loss = step(params, opt)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]
    years = tasks.age_years(head.apply(params, feats, train=False), spec)
    assert years.shape == (64,) and float(jnp.mean(jnp.abs(years - ages))) < 25


def test_learned_weighting_formula_and_missing_log_vars():
    spec = tasks.TaskSpec(weighting="learned")
    losses = {"age": jnp.float32(2.0), "gender": jnp.float32(1.0), "race": jnp.float32(0.5)}
    s = {"age": jnp.float32(0.5), "gender": jnp.float32(0.0), "race": jnp.float32(-1.0)}
    expected = sum(np.exp(-float(s[t])) * float(losses[t]) + float(s[t]) for t in losses)
    np.testing.assert_allclose(tasks.weighted_total(losses, spec, s), expected, rtol=1e-6)
    assert spec.model_options()["learned_loss_weights"] == tasks.TASKS
    with pytest.raises(ValueError, match="loss_log_vars"):
        tasks.weighted_total(losses, spec)


def test_alpha_dropout_keeps_mean_and_variance():
    x = jax.random.normal(jax.random.key(0), (200_000,))
    y = AlphaDropout(0.2).apply({}, x, rngs={"dropout": jax.random.key(1)})
    assert abs(float(jnp.mean(y))) < 0.02 and abs(float(jnp.std(y)) - 1) < 0.02
    assert float(jnp.mean(y == x)) < 0.9  # something was dropped
    np.testing.assert_array_equal(AlphaDropout(0.2, deterministic=True).apply({}, x), x)


def _config(**tasks_overrides) -> ml_collections.ConfigDict:
    c = defaults.get_config()
    c.tasks.update(tasks_overrides)
    return c


def test_validate_names_the_new_keys():
    with pytest.raises(ValueError, match="tasks.age_bins"):
        configuration.validate(_config(age_mode="ordinal"))
    with pytest.raises(ValueError, match="tasks.age_bins"):
        configuration.validate(_config(age_mode="bins", age_bins="decades"))
    with pytest.raises(ValueError, match="tasks.age_mode"):
        configuration.validate(_config(age_mode="quantile"))
    with pytest.raises(ValueError, match="tasks.weighting"):
        configuration.validate(_config(weighting="magic"))
    with pytest.raises(ValueError, match="tasks.age_loss"):
        configuration.validate(_config(age_loss="huber"))
    with pytest.raises(ValueError, match="tasks.age_loss"):
        configuration.validate(_config(age_mode="bins", age_bins="utkface9", age_loss="l1"))
    with pytest.raises(ValueError, match="tasks.age_bins"):
        tasks.TaskSpec.from_config({"age_mode": "bins"})
    configuration.validate(_config(age_mode="bins", age_bins="fairface9", weighting="learned"))
    with pytest.raises(ValueError, match="tasks.label_smoothing"):
        configuration.validate(_config(label_smoothing=1.0))
    bad = defaults.get_config()
    bad.optimizer.lr_multipliers = (("backbone/*", -1.0),)
    with pytest.raises(ValueError, match="optimizer.lr_multipliers"):
        configuration.validate(bad)
    bad = defaults.get_config()
    bad.optimizer.ema_decay = 1.0
    with pytest.raises(ValueError, match="optimizer.ema_decay"):
        configuration.validate(bad)


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_regression_age_losses(loss):
    spec = tasks.TaskSpec.from_config({"age_loss": loss})
    logits = jnp.asarray([[0.0], [1.0], [-2.0]])
    age = jnp.asarray([58.0, 20.0, 90.0])
    error = jax.nn.sigmoid(logits[:, 0]) - age / spec.max_age
    expected = jnp.abs(error) if loss == "l1" else jnp.square(error)
    np.testing.assert_allclose(tasks.age_loss(logits, age, spec), expected, rtol=1e-6)


def test_label_smoothing_mixes_one_hot_with_uniform():
    logits = jnp.asarray([[2.0, -1.0], [0.5, 0.0]])
    labels = jnp.asarray([0, 1])
    e = 0.2
    log_p = jax.nn.log_softmax(logits)
    targets = (1 - e) * jax.nn.one_hot(labels, 2) + e / 2
    expected = -(targets * log_p).sum(-1)
    np.testing.assert_allclose(tasks.class_loss(logits, labels, e), expected, rtol=1e-6)
    np.testing.assert_allclose(tasks.class_loss(logits, labels, 0.0),
                               -log_p[jnp.arange(2), labels], rtol=1e-6)
    spec = tasks.TaskSpec.from_config({"label_smoothing": e})
    outputs = {"age": jnp.zeros((2, 1)), "gender": logits, "race": jnp.zeros((2, 5))}
    batch = {"age": jnp.asarray([30.0, 40.0]), "gender": labels, "race": jnp.asarray([2, -1])}
    losses = tasks.per_example_losses(outputs, batch, spec)
    np.testing.assert_allclose(losses["gender"], expected, rtol=1e-6)
    # Uniform logits: smoothing changes nothing; an unlabelled race (-1) still costs nothing.
    np.testing.assert_allclose(losses["race"], [np.log(5.0), 0.0], rtol=1e-6)
