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
