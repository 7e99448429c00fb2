"""Max pooling whose gradient XLA:CPU runs without select-and-scatter.

XLA's CPU backend expands the max-pool gradient (select-and-scatter) into four int32 index
tensors the size of the padded input, a reduce-window over (value, index) tuples and a
scatter: for the ResNet stem at 64 px, batch 128 (128x34x34x48) that is ~113 MB of iotas
rebuilt every step and ~130 ms of op time, a quarter of the whole step beside the oneDNN
convolutions. Here the forward pass keeps, per output, which window tap held the maximum
(one int8 per output), and the backward pass places `dy` at that tap: one strided (interior)
pad per tap, all element-wise, which XLA fuses. Same values and the same gradient as
`flax.linen.max_pool` (the first maximum of a window in row-major tap order takes the
gradient, as XLA's select-and-scatter gives it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from agr_jax.models.conv import explicit_pads
from agr_jax.models.taps import Pads, tap_views


def _forward(x, window, strides, pads: Pads):
    low = jnp.asarray(-jnp.inf, x.dtype)
    xp = lax.pad(x, low, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
    views = tap_views(xp, *window, strides)
    best, argmax = views[0], jnp.zeros(views[0].shape, jnp.int8)
    for tap, view in enumerate(views[1:], start=1):
        better = view > best  # strict: the first maximum keeps the gradient
        best = jnp.where(better, view, best)
        argmax = jnp.where(better, jnp.int8(tap), argmax)
    return best, argmax


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
    return _forward(x, window, strides, pads)[0]


def _max_pool_fwd(x, window, strides, pads):
    y, argmax = _forward(x, window, strides, pads)
    return y, (argmax, x.shape)


def _max_pool_bwd(window, strides, pads, residuals, dy):
    argmax, (n, h, w, c) = residuals
    (kh, kw), (sh, sw) = window, strides
    _, ho, wo, _ = dy.shape
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    zero = jnp.zeros((), dy.dtype)
    dxp = None
    for i in range(kh):
        for j in range(kw):
            part = jnp.where(argmax == i * kw + j, dy, zero)
            # Output (a, b) read padded input (i + a*sh, j + b*sw): put it back there.
            part = lax.pad(part, zero, ((0, 0, 0), (i, hp - i - sh * (ho - 1) - 1, sh - 1),
                                        (j, wp - j - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)))
            dxp = part if dxp is None else dxp + part
    dx = lax.slice(dxp, (0, pads[0][0], pads[1][0], 0), (n, pads[0][0] + h, pads[1][0] + w, c))
    return (dx,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def export_max_pool(x, window, strides, pads: Pads):
    """A plain reduce-window for symbolic batches (`jax.export`, ONNX: inference in any
    runtime). Pooled as (N*C, H, W) maps: jax2onnx lowers a reduce-window of rank r to an
    (r)-D ONNX MaxPool, and onnxruntime pools at most 3-D."""
    n, h, w, c = x.shape
    maps = jnp.transpose(x, (0, 3, 1, 2)).reshape(-1, h, w)
    pooled = lax.reduce_window(maps, jnp.asarray(-jnp.inf, x.dtype), lax.max, (1, *window),
                               (1, *strides), ((0, 0), *pads))
    return jnp.transpose(pooled.reshape(n, c, *pooled.shape[1:]), (0, 2, 3, 1))


def max_pool(x: jnp.ndarray, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: str | Sequence[tuple[int, int]] = "VALID") -> jnp.ndarray:
    """`flax.linen.max_pool` for NHWC maps; on CPU with the gradient described above.

    Accelerators keep XLA's own pooling (their select-and-scatter is not expanded this way),
    and so do windows of more than 127 taps (the tap index is int8), negative padding,
    non-float inputs and symbolic shapes (exports).
    """
    window = (int(window_shape[0]), int(window_shape[1]))
    strides = window if strides is None else (int(strides[0]), int(strides[1]))
    if (x.ndim != 4 or window[0] * window[1] > 127 or jax.default_backend() != "cpu"
            or not jnp.issubdtype(x.dtype, jnp.floating)):
        return nn.max_pool(x, window, strides, padding)
    pads = explicit_pads(x.shape, window, strides, padding)
    if not all(isinstance(d, int) for d in x.shape):
        return export_max_pool(x, window, strides, pads)
    if min(min(pads)) < 0:  # the backward's pads assume every tap lies in the padded map
        return nn.max_pool(x, window, strides, padding)
    return _max_pool(x, window, strides, pads)
