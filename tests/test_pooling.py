"""models.pooling: the CPU max pool gives flax's values and XLA's gradient (ties included),
without select-and-scatter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agr_jax.models.pooling import max_pool

# (input N, H, W, C), window, strides, padding: the stems of the zoo and odd shapes.
CASES = [
    ((2, 16, 16, 4), (3, 3), (2, 2), [(1, 1), (1, 1)]),  # ResNet stem
    ((2, 9, 8, 3), (3, 3), (2, 2), "SAME"),  # RoR / Xception, odd and non-square
    ((2, 9, 9, 3), (3, 3), (2, 2), "VALID"),  # Inception
    ((2, 8, 8, 3), (2, 2), (2, 2), "VALID"),  # VGG
    ((1, 7, 6, 2), (3, 3), (1, 1), "SAME"),  # overlapping, stride 1
    ((1, 7, 7, 2), (3, 2), (2, 1), [(0, 1), (2, 0)]),  # asymmetric everything
]


def _grad(pool, x, cot):
    return jax.jit(jax.grad(lambda a: jnp.sum((pool(a) * cot).astype(jnp.float32))))(x)


@pytest.mark.parametrize("shape,window,strides,padding", CASES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_values_and_gradient_match_flax(shape, window, strides, padding, ties, dtype):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 3, shape) if ties else rng.normal(size=shape)
    x = jnp.asarray(values, dtype)
    ours = lambda a: max_pool(a, window, strides, padding)
    ref = lambda a: nn.max_pool(a, window, strides, padding)
    y, y_ref = ours(x), ref(x)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(np.float32(y), np.float32(y_ref))
    cot = jnp.asarray(rng.normal(size=y.shape), dtype)
    got, want = _grad(ours, x, cot), _grad(ref, x, cot)
    assert got.dtype == want.dtype
    tol = 1e-6 if dtype == "float32" else 2e-2
    # With ties the gradient goes to the first maximum of each window, as XLA's does.
    np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=tol, atol=tol)


def test_cpu_gradient_has_no_select_and_scatter():
    x = jnp.ones((2, 16, 16, 4))
    grad = jax.grad(lambda a: jnp.sum(max_pool(a, (3, 3), (2, 2), [(1, 1), (1, 1)])))
    hlo = jax.jit(grad).lower(x).as_text()
    assert "select_and_scatter" not in hlo and "reduce_window" not in hlo
    flax_hlo = jax.jit(jax.grad(lambda a: jnp.sum(nn.max_pool(
        a, (3, 3), (2, 2), [(1, 1), (1, 1)])))).lower(x).as_text()
    assert "select_and_scatter" in flax_hlo  # what the CPU route avoids
