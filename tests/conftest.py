"""Shared test fixtures."""

import pytest


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """120 synthetic UTKFace-format 48px images plus the synthetic module's malformed files."""
    from agr_jax.data import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, 120, seed=0, size=48, with_malformed=True)
    return out


@pytest.fixture(scope="session")
def synthetic_tfds(synthetic_dir, tmp_path_factory):
    """The synthetic_dir prepared as a TFDS build (seed 0, 0.8/0.1/0.1); returns OUT."""
    from agr_jax.data import prepare

    out = tmp_path_factory.mktemp("synthetic_tfds")
    prepare.prepare(synthetic_dir, out, seed=0)
    return out


def make_tiny_config(**overrides):
    """The quickstart config shrunk for tests: width-4 RoR, 32px, 240 synthetic faces."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.data.synthetic_num = 240
    c.data.image_size = 32
    c.model.width = 4
    c.model.stage_sizes = (1, 1)
    c.model.head_hidden = (16,)
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_epochs = 2
    c.log_every_steps = 2
    c.optimizer.warmup_steps = 0
    for dotted, value in overrides.items():
        node = c
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


@pytest.fixture
def tiny_config():
    return make_tiny_config


# XLA CPU options for tiny test models (also accepted by `create_train_state`).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="session")
def fast_jit():
    """`jax.jit` with XLA's CPU backend optimisations off: tiny test models compile ~2-3x
    faster (conv nets: seconds each) and their run time is negligible anyway."""
    import functools

    import jax

    return functools.partial(jax.jit, compiler_options=FAST_COMPILE)
