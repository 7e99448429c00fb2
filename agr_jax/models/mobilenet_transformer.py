"""MobileNet features -> transformer encoder over the spatial tokens -> (global max pool in head).

Each encoder layer is post-norm, as in Vaswani et al.: x = LN(x + MHSA(x)); x = LN(x + FFN(x)),
with a learned positional embedding added to the tokens first. The result is reshaped back to
NHWC so the shared head's global pooling (max by default) reduces the tokens.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from agr_jax.models.layers import Backbone, dense_factory
from agr_jax.models.mobilenet import BLOCKS, MobileNet

Dtype = Any


class EncoderLayer(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        dense = dense_factory(self.dtype, self.param_dtype)
        layer_norm = lambda name: nn.LayerNorm(
            dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )
        drop = nn.Dropout(self.dropout, deterministic=not train)
        attn = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            deterministic=True,
            name="mhsa",
        )(x, x)
        x = layer_norm("ln_attn")(x + drop(attn))
        y = dense(x.shape[-1], name="ffn_out")(nn.gelu(dense(self.mlp_dim, name="ffn_in")(x)))
        return layer_norm("ln_ffn")(x + drop(y))


class MobileNetTransformer(Backbone):
    alpha: float = 1.0
    num_blocks: int = len(BLOCKS)
    d_model: int = 256
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        fmap = MobileNet(
            alpha=self.alpha,
            num_blocks=self.num_blocks,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            channel_multiple=self.channel_multiple,
            name="mobilenet",
        )(x, train)
        b, h, w, _ = fmap.shape
        tokens = dense_factory(self.dtype, self.param_dtype)(self.d_model, name="token_proj")(
            fmap.reshape(b, h * w, -1)
        )
        pos = self.param(
            "pos_embedding",
            nn.initializers.normal(0.02),
            (1, h * w, self.d_model),
            self.param_dtype,
        )
        tokens = tokens + pos.astype(self.dtype)
        for i in range(self.num_layers):
            tokens = EncoderLayer(
                self.num_heads,
                self.mlp_dim,
                self.dropout,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"encoder{i + 1}",
            )(tokens, train)
        return tokens.reshape(b, h, w, self.d_model)
