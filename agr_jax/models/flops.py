"""Analytic FLOP counts, per layer, from the jaxpr of a model's forward pass.

`cost_analysis()` is best-effort (missing or wrong for convolutions on some backends), so
throughput numbers use this count instead: 2 x multiply-accumulates of every convolution
(grouped and depthwise included; oneDNN's FFI calls too) and every matrix product in
`model.apply`. Element-wise work (BatchNorm, activations, pooling) is left out, as is usual
for MFU.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from agr_jax.models import conv, onednn_conv


def _conv_macs(eqn: Any) -> int:
    """Output elements x (input channels per group) x kernel window, for one conv."""
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
    window = math.prod(rhs[d] for d in rhs_spec[2:])
    # The kernel's input-feature dim already holds C_in / feature_group_count.
    return math.prod(out) * rhs[rhs_spec[1]] * window


def _dot_macs(eqn: Any) -> int:
    lhs = eqn.invars[0].aval.shape
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _ffi_macs(eqn: Any) -> int:
    """The oneDNN forward convolution (`models.onednn_conv`): NHWC input, HWIO kernel."""
    if eqn.params["target_name"] != onednn_conv.TARGETS["forward"]:
        return 0
    kh, kw, cin, _ = eqn.invars[1].aval.shape
    return math.prod(eqn.outvars[0].aval.shape) * cin * kh * kw


_COUNTERS = {"conv_general_dilated": _conv_macs, "dot_general": _dot_macs,
             "ffi_call": _ffi_macs}


def _is_dense_conv(eqn: Any) -> bool:
    """`models.conv._dense_conv`: a convolution run as one matmul over whole maps, counted as
    the convolution (every kernel tap, as for the other routes), not as its matmul."""
    if eqn.primitive.name != "custom_vjp_call":
        return False
    info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    where = getattr(info, "func_src_info", "") or ""
    return where.startswith(f"{conv._dense_conv.__name__} ")


def _sub_jaxprs(eqn: Any):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jex_core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex_core.Jaxpr):
                yield item


def _walk(jaxpr: Any, scope: str, out: list[tuple[str, str, int]]) -> None:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        layer = str(eqn.source_info.name_stack) or scope
        if name in _COUNTERS:
            out.append((layer, name, 2 * _COUNTERS[name](eqn)))
            continue
        if _is_dense_conv(eqn):  # x [N, H, W, Cin], w [kh, kw, Cin, Cout] -> [N, Ho, Wo, Cout]
            kh, kw, cin, _ = eqn.invars[1].aval.shape
            out.append((layer, "dense_conv",
                        2 * math.prod(eqn.outvars[0].aval.shape) * kh * kw * cin))
            continue
        if name == "cond" and eqn.params.get("branches_platforms"):
            # `lax.platform_dependent` (the conv routing, `models.conv`): one computation in
            # per-platform forms; count XLA's (the default, last), the taps every form runs
            _walk(eqn.params["branches"][-1].jaxpr, layer, out)
            continue
        if name == "scan":
            inner: list[tuple[str, str, int]] = []
            for sub in _sub_jaxprs(eqn):
                _walk(sub, layer, inner)
            out.extend((n, p, f * int(eqn.params["length"])) for n, p, f in inner)
            continue
        for sub in _sub_jaxprs(eqn):
            _walk(sub, layer, out)


def layer_flops(
    model: Any, image_size: int, channels: int = 3, *, variables: Any = None
) -> list[tuple[str, str, int]]:
    """[(layer name, primitive, forward FLOPs for one image)] for `model.apply` (eval mode)."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    if variables is None:
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape)))
    jaxpr = jax.make_jaxpr(lambda v, im: model.apply(v, im, train=False))(variables, x)
    out: list[tuple[str, str, int]] = []
    _walk(jaxpr.jaxpr, "", out)
    return out


def forward_flops(model: Any, image_size: int, channels: int = 3, *, variables: Any = None) -> int:
    """Forward-pass FLOPs (2 x MACs of convs and matmuls) for ONE image of `image_size`^2."""
    return sum(f for _, _, f in layer_flops(model, image_size, channels=channels,
                                            variables=variables))


def train_flops(model: Any, image_size: int, **kw: Any) -> int:
    """Training FLOPs per image: forward + backward (grad wrt inputs and weights) = 3 x forward."""
    return 3 * forward_flops(model, image_size, **kw)
