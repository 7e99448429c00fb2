"""`config.init`: a saved tree loads into a model whose race head is wider (strict: an error
listing the mismatched paths; lenient: everything else loads), and phases freeze the trunk
(params and BN statistics) in phase 1, then train it in phase 2."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from agr_jax import models, tasks
from agr_jax.train import init_weights, phases
from agr_jax.train.state import TrainState
from agr_jax.train.step import make_train_step

SIZE = 32
TINY = dict(alpha=0.125, num_blocks=2, conv_impl="xla")


def tiny_model(races: int = 5):
    return models.build("mobilenet", outputs={"age": 1, "gender": 2, "race": races}, **TINY)


def init(model, seed=0):
    return model.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)), train=False)


def flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in
            jax.tree_util.tree_flatten_with_path(tree)[0]}  # fmt: skip


@pytest.fixture
def saved(tmp_path):
    variables = init(tiny_model(races=5), seed=0)
    path = tmp_path / "tree"
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, jax.tree.map(np.asarray, dict(variables)))
    return path, variables


def test_strict_lists_every_mismatch_and_lenient_loads_the_rest(saved):
    path, source = saved
    target = dict(init(tiny_model(races=7), seed=1))
    with pytest.raises(init_weights.InitMismatch) as err:
        init_weights.load_into(target, path, strict=True)
    message = str(err.value)
    assert "shape mismatches (2)" in message
    assert "params/head/race/logits/kernel: checkpoint (128, 5) vs model (128, 7)" in message
    assert "params/head/race/logits/bias: checkpoint (5,) vs model (7,)" in message

    loaded = flat(init_weights.load_into(target, path, strict=False))
    want_source, want_fresh = flat(source), flat(target)
    for key, value in loaded.items():
        expected = want_fresh[key] if "'race']['logits'" in key else want_source[key]
        np.testing.assert_array_equal(value, expected, err_msg=key)
    # The model's own init differs, so equality with the source means the leaves were loaded.
    key = "['params']['backbone']['conv1']['kernel']"
    assert not np.array_equal(want_fresh[key], want_source[key])


def test_initialise_leaves_a_state_without_init_checkpoint_alone():
    state = TrainState(jnp.zeros((), jnp.int32), {"w": jnp.ones(2)}, {}, (), jnp.zeros(2))
    assert init_weights.initialise(state, ml_collections.ConfigDict({"checkpoint": None})) is state


def test_phase_one_freezes_the_trunk_and_its_statistics_phase_two_trains_it():
    model = tiny_model()
    variables = init(model)
    phase_list = phases.parse_phases(((1, (("backbone/*", 0.0),)), (0, ())), steps_per_epoch=2)
    tx = phases.with_phases(optax.adam(1e-2), phase_list)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
        rng=jax.random.key_data(jax.random.key(1)),
    )
    step = jax.jit(make_train_step(model, tx, tasks.TaskSpec(), phases=phase_list))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (4, SIZE, SIZE, 3)).astype(np.uint8),
        "age": rng.integers(1, 90, 4).astype(np.float32),
        "gender": rng.integers(0, 2, 4).astype(np.int32),
        "race": rng.integers(0, 5, 4).astype(np.int32),
    }
    history = [state]
    for _ in range(3):  # steps 0, 1: phase 1; step 2: phase 2
        state, _ = step(state, batch)
        history.append(state)

    def same(a, b):
        return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    def changed(a, b):
        return all(jax.tree.leaves(jax.tree.map(lambda x, y: not np.array_equal(x, y), a, b)))

    start, phase1, phase2 = history[0], history[2], history[3]
    assert same(start.params["backbone"], phase1.params["backbone"])
    assert same(start.batch_stats["backbone"], phase1.batch_stats["backbone"])
    assert changed(start.params["head"], phase1.params["head"])
    assert changed(phase1.params["backbone"], phase2.params["backbone"])
    assert changed(phase1.batch_stats["backbone"], phase2.batch_stats["backbone"])


def test_bad_phases_are_refused_with_the_key():
    with pytest.raises(ValueError, match=r"init.phases\[0\]: only the last phase may have 0"):
        phases.parse_phases(((0, ()), (0, ())), steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"init.phases\[1\]: expected \(epochs >= 0"):
        phases.parse_phases(((1, ()), ("x", ())), steps_per_epoch=3)
