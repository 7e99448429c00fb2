"""Analytic forward FLOPs: count the multiply-accumulates of every conv and matmul in the model.

The model is traced once with `jax.make_jaxpr` on abstract inputs (nothing is computed or
compiled) and the `conv_general_dilated` / `dot_general` equations are walked, including those
inside nested jaxprs (jit, custom_jvp, remat). FLOPs = 2 x MACs; element-wise work (BN, ReLU,
pooling, softmax) is not counted, as is usual for model tables. XLA's `cost_analysis()` is
best-effort (wrong or missing for convs on some backends), hence this counter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp


def _sub_jaxprs(value: Any) -> Iterator[Any]:
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _sub_jaxprs(v)


def _eqn_macs(eqn: Any) -> int:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        lhs, rhs = (v.aval for v in eqn.invars)
        out = eqn.outvars[0].aval
        out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
        # Per output element: kernel window x input channels per group.
        return math.prod(out.shape) * math.prod(rhs.shape) // rhs.shape[out_feature_dim]
    if name == "dot_general":
        lhs, rhs = (v.aval for v in eqn.invars)
        (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
        rhs_free = [d for i, d in enumerate(rhs.shape) if i not in (*rhs_contract, *rhs_batch)]
        return math.prod(lhs.shape) * math.prod(rhs_free)
    return 0


def jaxpr_macs(jaxpr: Any) -> int:
    """Multiply-accumulates of all convs and matmuls in `jaxpr` and its sub-jaxprs."""
    total = 0
    for eqn in jaxpr.eqns:
        total += _eqn_macs(eqn)
        multiplier = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
        for param in eqn.params.values():
            for sub in _sub_jaxprs(param):
                total += multiplier * jaxpr_macs(sub)
    return total


def forward_flops(model: Any, image_size: int, channels: int = 3) -> int:
    """Inference FLOPs (2 x MACs) of one `image_size` x `image_size` image through `model`."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return 2 * jaxpr_macs(closed.jaxpr)
