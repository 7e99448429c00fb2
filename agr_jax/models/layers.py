"""Layer factories shared by backbones, so dtype/param_dtype are threaded in one place."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.conv import conv_general_dilated_for

Dtype = Any


def conv_factory(dtype: Dtype, param_dtype: Dtype, conv_impl: str = "auto", **defaults: Any):
    """A `nn.Conv` partial with the model's compute/storage dtypes, He init (no bias unless
    `use_bias=True` is among `defaults`) and the convolution routing of `models.conv`."""
    defaults = {
        "use_bias": False,
        "kernel_init": nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        "conv_general_dilated": conv_general_dilated_for(conv_impl),
        **defaults,
    }
    return functools.partial(nn.Conv, dtype=dtype, param_dtype=param_dtype, **defaults)


def norm_factory(
    train: bool,
    dtype: Dtype,
    param_dtype: Dtype,
    axis_name: str | None = None,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
):
    """A `nn.BatchNorm` partial; statistics are reduced in float32 and synced over `axis_name`."""
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        axis_name=axis_name,
    )


def dense_factory(dtype: Dtype, param_dtype: Dtype):
    return functools.partial(nn.Dense, dtype=dtype, param_dtype=param_dtype)


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (tiny test variants), never below 1."""
    return max(1, int(channels * width))


def round_channels(channels: int, multiple: int) -> int:
    """`channels` rounded up to a multiple of `multiple` (1: unchanged): tensor cores and
    TPU matrix units work on whole tiles of channels, so a width that is not a multiple of
    the tile leaves part of every tile idle (`model.channel_multiple`)."""
    if multiple < 1:
        raise ValueError(f"model.channel_multiple: expected >= 1, got {multiple}")
    return -(-int(channels) // multiple) * multiple


class SeparableConv(nn.Module):
    """Depthwise k x k then pointwise 1x1 conv: Keras `SeparableConv2D` (no bias) as two convs."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: int = 1
    padding: Any = "SAME"
    conv: Any = None

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        x = self.conv(
            channels,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            feature_group_count=channels,
            name="depthwise",
        )(x)
        return self.conv(self.features, (1, 1), name="pointwise")(x)


def to_dtype(name: str | Dtype) -> Dtype:
    """Config strings ('float32', 'bfloat16') to jnp dtypes."""
    return jnp.dtype(name) if isinstance(name, str) else name


class Backbone(nn.Module):
    """Fields every backbone shares: compute dtype, storage dtype, BatchNorm sync axis and
    convolution routing (`models.conv`, `model.conv_impl`).

    Subclasses build their layers from `conv_layer`/`norm_layer`, so these reach every layer.
    """

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    conv_impl: str = "auto"
    # Every convolution's output channels rounded up to a multiple of this (1: as written).
    channel_multiple: int = 1

    def channels(self, count: int) -> int:
        """`count` as the convolutions will round it (for blocks that compare widths)."""
        return round_channels(count, int(self.channel_multiple))

    def conv_layer(self, **defaults: Any):
        make = conv_factory(self.dtype, self.param_dtype, self.conv_impl, **defaults)
        multiple = int(self.channel_multiple)
        if multiple == 1:
            return make

        def rounded(*args: Any, **kwargs: Any):
            if "features" in kwargs:
                kwargs["features"] = round_channels(kwargs["features"], multiple)
            else:
                args = (round_channels(args[0], multiple), *args[1:])
            return make(*args, **kwargs)

        return rounded

    def norm_layer(self, train: bool, **kwargs: Any):
        return norm_factory(train, self.dtype, self.param_dtype, self.bn_axis_name, **kwargs)
