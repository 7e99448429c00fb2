"""MTCNN's three nets (Zhang et al. 2016) in Flax linen, laid out as facenet-pytorch's.

Parameter names follow the torch state dicts (`conv1`, `prelu1`, `dense5_1`, ...) so the
converter (`agr_jax.convert.mtcnn`) maps them one to one. Inputs are NHWC float32, already
normalised as MTCNN expects: (pixel - 127.5) / 128.
"""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agr_jax.models.conv import conv_general_dilated_for

WEIGHTS = Path(__file__).resolve().parent / "weights" / "mtcnn.npz"
NETS = ("pnet", "rnet", "onet")


class PReLU(nn.Module):
    """Per-channel PReLU (torch's nn.PReLU(C)); flax's own has one shared slope."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, alpha * x)


def max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
    """torch MaxPool2d(window, stride, ceil_mode=True): partial windows at the far edges count."""
    pads = []
    for n in x.shape[1:3]:
        out = -(-(n - window) // stride) + 1
        pads.append((0, (out - 1) * stride + window - n))
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")


def _flatten_like_torch(x: jax.Array) -> jax.Array:
    """torch's nets flatten NCHW after permute(0, 3, 2, 1), i.e. in (W, H, C) order."""
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


def _conv(features: int, kernel: int, name: str, impl: str) -> nn.Conv:
    # `impl` as model.conv_impl (models/conv.py): "auto" takes oneDNN on CPU where it builds
    # (XLA:CPU's convolution ran the detector's nets at about half the speed); GPUs and TPUs
    # keep XLA's; the ONNX export asks for "xla" (no custom calls in the graph).
    return nn.Conv(features, (kernel, kernel), padding="VALID", name=name,
                   conv_general_dilated=conv_general_dilated_for(impl))


class PNet(nn.Module):
    """Proposal net: fully convolutional, one 12x12 window per output cell (stride 2).

    `valid` (B, 2) gives each image's true (height, width) inside a padded canvas: conv1
    outputs beyond it are pushed to -1e9 so the ceil-mode pool sees exactly the unpadded
    image's partial windows, and every output cell inside the valid area is as if unpadded.
    """

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array | None = None):
        x = PReLU(name="prelu1")(_conv(10, 3, "conv1", self.conv_impl)(x))
        if valid is not None:
            rows = jnp.arange(x.shape[1])[None, :, None] < (valid[:, 0, None, None] - 2)
            cols = jnp.arange(x.shape[2])[None, None, :] < (valid[:, 1, None, None] - 2)
            x = jnp.where((rows & cols)[..., None], x, -1e9)
        x = max_pool_ceil(x, 2, 2)
        x = PReLU(name="prelu2")(_conv(16, 3, "conv2", self.conv_impl)(x))
        x = PReLU(name="prelu3")(_conv(32, 3, "conv3", self.conv_impl)(x))
        prob = jax.nn.softmax(_conv(2, 1, "conv4_1", self.conv_impl)(x), axis=-1)[..., 1]
        reg = _conv(4, 1, "conv4_2", self.conv_impl)(x)
        return prob, reg


class RNet(nn.Module):
    """Refine net: 24x24 crops -> face probability and box regression."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array):
        x = max_pool_ceil(PReLU(name="prelu1")(_conv(28, 3, "conv1", self.conv_impl)(x)), 3, 2)
        x = max_pool_ceil(PReLU(name="prelu2")(_conv(48, 3, "conv2", self.conv_impl)(x)), 3, 2)
        x = PReLU(name="prelu3")(_conv(64, 2, "conv3", self.conv_impl)(x))
        x = PReLU(name="prelu4")(nn.Dense(128, name="dense4")(_flatten_like_torch(x)))
        prob = jax.nn.softmax(nn.Dense(2, name="dense5_1")(x), axis=-1)[:, 1]
        return prob, nn.Dense(4, name="dense5_2")(x)


class ONet(nn.Module):
    """Output net: 48x48 crops -> probability, box regression, 5 landmarks (x0..x4, y0..y4)."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array):
        x = max_pool_ceil(PReLU(name="prelu1")(_conv(32, 3, "conv1", self.conv_impl)(x)), 3, 2)
        x = max_pool_ceil(PReLU(name="prelu2")(_conv(64, 3, "conv2", self.conv_impl)(x)), 3, 2)
        x = max_pool_ceil(PReLU(name="prelu3")(_conv(64, 3, "conv3", self.conv_impl)(x)), 2, 2)
        x = PReLU(name="prelu4")(_conv(128, 2, "conv4", self.conv_impl)(x))
        x = PReLU(name="prelu5")(nn.Dense(256, name="dense5")(_flatten_like_torch(x)))
        prob = jax.nn.softmax(nn.Dense(2, name="dense6_1")(x), axis=-1)[:, 1]
        return prob, nn.Dense(4, name="dense6_2")(x), nn.Dense(10, name="dense6_3")(x)


def load_params(path: str | Path = WEIGHTS) -> dict[str, dict]:
    """{"pnet": params, "rnet": ..., "onet": ...} from the converter's flat npz
    ("pnet/conv1/kernel" -> array)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MTCNN weights not found at {path}; "
                                "create them with `python -m agr_jax.convert mtcnn`")
    params: dict[str, dict] = {}
    with np.load(path) as data:
        for key in data.files:
            node = params
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = jnp.asarray(data[key])
    missing = [n for n in NETS if n not in params]
    if missing:
        raise ValueError(f"{path}: no parameters for {missing}")
    return params
