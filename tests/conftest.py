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


# XLA CPU options for tiny test models (also accepted by `create_train_state`).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="session")
def fast_jit():
    """`jax.jit` with XLA's CPU backend optimisations off: tiny test models compile ~2-3x
    faster (conv nets: seconds each) and their run time is negligible anyway."""
    import functools

    import jax

    return functools.partial(jax.jit, compiler_options=FAST_COMPILE)
