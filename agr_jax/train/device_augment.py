"""Flip and pad-crop inside the jitted train step, from parameters the host drew.

With `data.augment_on` "auto" or "device" the pipeline draws each record's flip and crop
(`pipeline.flip_crop_params`, the same draws host augmentation uses) and leaves the pixels
alone; the step moves them here, on its own shard of the batch. The host then only reads
and decodes: on the 2-core CPU host a read thread that preempts one XLA device's thread
stalls both (RoR's devices meet at every BatchNorm psum), and on a GPU/TPU host the cores
are freed for decoding. The pixels are the ones `pipeline.augment_batch` gives (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agr_jax.data.pipeline import reflect_index


def flip_pad_crop(images: jax.Array, flip_crop: jax.Array) -> jax.Array:
    """[N, H, W, C] images, [N, 3] int32 (flip, dy, dx) -> each image flipped horizontally
    where `flip`, reflect-padded and cropped back to H x W with its window shifted by
    (dy, dx): one gather of rows and columns per image, no padded copy.

    The result is materialised (`optimization_barrier`): fused into its consumers (pixel
    normalisation, the first convolution and its weight gradient) the gather was recomputed
    per element, and RoR's step on 2 CPU devices took ~10 ms longer (111 vs 101 ms);
    materialised it costs ~0.1 ms per 32 images of 64 px and the step reads level with an
    unaugmented one (2026-12-03, in-process A/B).
    """
    _, h, w, _ = images.shape
    rows = reflect_index(jnp.arange(h)[None, :] + flip_crop[:, 1:2], h, jnp)
    cols = reflect_index(jnp.arange(w)[None, :] + flip_crop[:, 2:3], w, jnp)
    cols = jnp.where(flip_crop[:, 0:1] > 0, w - 1 - cols, cols)
    take = lambda image, r, c: image[r[:, None], c[None, :]]
    return jax.lax.optimization_barrier(jax.vmap(take)(images, rows, cols))
