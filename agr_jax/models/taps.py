"""The padded, strided views a convolution or pooling window reads, shared by the conv
routes (`conv`, `onednn_conv`) and pooling, so all of them agree on which input each
output position sees."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def tap_views(xp: jnp.ndarray, kh: int, kw: int, strides: tuple[int, int]) -> list:
    """One strided [N, Ho, Wo, C] view of the padded map `xp` per kernel tap, row-major:
    tap (i, j) of output (a, b) reads xp[:, i + a*sh, j + b*sw]."""
    n, hp, wp, c = xp.shape
    sh, sw = strides
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    return [
        lax.slice(xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                  (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]


def patches(x: jnp.ndarray, kh: int, kw: int, strides: tuple[int, int],
            pads: Pads) -> jnp.ndarray:
    """[N, Ho, Wo, kh*kw*C] im2col patches of x padded by `pads`, (i, j, c) order to match
    an HWIO kernel; for a 1x1 kernel, just the positions a strided conv reads."""
    if any(p for pair in pads for p in pair):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    taps = tap_views(x, kh, kw, strides)
    return jnp.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]
