"""`model.channel_multiple`: every backbone's convolutions rounded to whole channel tiles."""

import jax
import jax.numpy as jnp
import pytest

from agr_jax import models, tasks
from agr_jax.models.layers import round_channels
from tests.test_models_zoo import TINY

SPEC = tasks.TaskSpec()


def _params(name: str, **extra):
    size, options = TINY[name]
    model = models.build(name, outputs=SPEC.output_sizes(), **options, **extra)
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))["params"]


def _conv_kernels(params) -> dict[str, tuple[int, ...]]:
    return {jax.tree_util.keystr(path): leaf.shape
            for path, leaf in jax.tree.leaves_with_path(params)
            if leaf.ndim == 4 and jax.tree_util.keystr(path).endswith("['kernel']")}


def test_round_channels():
    assert [round_channels(c, 8) for c in (1, 8, 9, 48, 50)] == [8, 8, 16, 48, 56]
    assert round_channels(37, 1) == 37
    with pytest.raises(ValueError, match="channel_multiple"):
        round_channels(8, 0)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_conv_is_rounded_and_one_changes_nothing(name):
    plain = _params(name)
    assert jax.tree.map(lambda a: a.shape, _params(name, channel_multiple=1)) == \
        jax.tree.map(lambda a: a.shape, plain)  # the default: parameter counts unchanged
    kernels = _conv_kernels(_params(name, channel_multiple=8))
    assert kernels, name
    bad = {k: s for k, s in kernels.items() if s[-1] % 8}
    assert not bad, f"{name}: conv outputs not multiples of 8: {bad}"
    assert kernels.keys() == _conv_kernels(plain).keys()
