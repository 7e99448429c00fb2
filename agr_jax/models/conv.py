"""Convolutions routed around XLA:CPU's slow spots (`model.conv_impl`).

XLA's CPU convolution is far from its matmul speed, and further from oneDNN (what PyTorch
runs on CPU), on small-face layers (2 cores, batch 128, float32, forward + both gradients;
benchmarks/conv_layers.py): a 3x3 conv 16x16x48 -> 48 takes ~50 ms under XLA, ~21 ms
under oneDNN; the RGB stem's forward + weight gradient ~125 ms against ~25 ms. So on CPU:
- `impl="onednn"`: plain float32/bfloat16 NHWC convolutions go to oneDNN through the FFI
  (`models.onednn_conv`), except maps of at most 4 outputs (2x2), which one matmul runs
  as fast: over im2col patches, or over whole maps where the input has fewer positions
  than the kernel has taps (`_dense_conv`; ResNet-18's step at 64 px 1.07x faster, 8 of 8
  alternating rounds 1.056-1.19, 2026-12-03). Grouped and depthwise convolutions (Xception,
  MobileNet) go to oneDNN at every size: XLA:CPU's are its slowest;
- `impl="matmul"`: XLA's convolution except where it is slowest: outputs of at most 16
  positions (a 3x3 conv 2x2x384 -> 384: 230 ms, as one matmul 24 ms), 1x1 convs, and the
  weight gradient over few input channels (the RGB stem), which become matmuls;
- `impl="auto"` (default): "onednn" where the oneDNN FFI builds, "matmul" otherwise;
- `impl="xla"` never reroutes.
The choice follows the platform a program is lowered for, not the host that traces it
(`lax.platform_dependent`): GPU/TPU programs always hold XLA's convolution, also when a CPU
host exports them (`jax.export`, tests/test_accelerator_lowering.py), and only programs
lowered for CPU hold the routing (oneDNN only where the tracing process' default backend is
the CPU: a GPU/TPU process builds no oneDNN library, its CPU programs get the matmul routing).
Parameters are the same either way, so checkpoints move freely between impls.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from agr_jax.models import onednn_conv
from agr_jax.models.taps import Pads, patches

logger = logging.getLogger(__name__)

CONV_IMPLS = ("auto", "onednn", "matmul", "xla")
NHWC = ("NHWC", "HWIO", "NHWC")
MAX_MATMUL_POSITIONS = 16  # output positions up to which the whole conv is one matmul
MAX_MATMUL_POSITIONS_ONEDNN = 4  # the same when oneDNN takes the others (2x2 maps)
MAX_STEM_CHANNELS = 4  # input channels up to which the weight gradient is a matmul


def _matmul_conv(x, w, strides: tuple[int, int], pads: Pads, out_dtype):
    kh, kw, cin, cout = w.shape
    cols = patches(x, kh, kw, strides, pads)
    y = lax.dot_general(cols, w.reshape(kh * kw * cin, cout), (((3,), (0,)), ((), ())),
                        preferred_element_type=jnp.float32)
    return y.astype(out_dtype)


def _dense_taps(x_shape, w_shape, strides, pads) -> tuple[tuple[int, int], list]:
    """For a conv over whole maps: the output side, and per (input, output) position pair
    (row-major each) the kernel tap joining them, or None where none does."""
    _, hi, wi, _ = x_shape
    kh, kw, _, _ = w_shape
    _, ho, wo, _ = onednn_conv.output_shape(x_shape, w_shape, strides, pads)
    top, left = pads[0][0], pads[1][0]
    taps = []
    for iy in range(hi):
        for ix in range(wi):
            for oy in range(ho):
                for ox in range(wo):
                    ky, kx = iy - oy * strides[0] + top, ix - ox * strides[1] + left
                    taps.append((ky, kx) if 0 <= ky < kh and 0 <= kx < kw else None)
    return (ho, wo), taps


def _dense_weight(w, taps, positions: tuple[int, int]):
    """[Hi*Wi*Cin, Ho*Wo*Cout]: block (input i, output o) = the tap joining them, else 0."""
    _, _, cin, cout = w.shape
    inputs, outputs = positions
    zero = jnp.zeros((cin, cout), w.dtype)
    blocks = [w[t] if t is not None else zero for t in taps]
    rows = [jnp.stack(blocks[i * outputs:(i + 1) * outputs], axis=1) for i in range(inputs)]
    return jnp.stack(rows).reshape(inputs * cin, outputs * cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dense_conv(x, w, strides: tuple[int, int], pads: Pads):
    """A conv on a map with fewer positions than its kernel has taps, as one matmul over
    whole maps: [N, Hi*Wi*Cin] @ [Hi*Wi*Cin, Ho*Wo*Cout]. im2col multiplies every output by
    all kh*kw taps, most of them padding here; this only by the Hi*Wi real inputs (a 3x3
    conv on a 2x2 map, ResNet-18's last stage at 64 px: 4/9 of the multiply-adds). The
    weight gradient sums the blocks of x^T dy into their taps directly (autodiff of the
    assembly would pad every block to the kernel's shape first)."""
    return _dense_fwd(x, w, strides, pads)[0]


def _dense_fwd(x, w, strides, pads):
    n, hi, wi, _ = x.shape
    cout = w.shape[-1]
    (ho, wo), taps = _dense_taps(x.shape, w.shape, strides, pads)
    weight = _dense_weight(w, taps, (hi * wi, ho * wo))
    y = lax.dot_general(x.reshape(n, -1), weight, (((1,), (0,)), ((), ())),
                        preferred_element_type=jnp.float32)
    return y.reshape(n, ho, wo, cout).astype(x.dtype), (x, weight, w.shape)


def _dense_bwd(strides, pads, residuals, dy):
    x, weight, (kh, kw, cin, cout) = residuals
    n, hi, wi, _ = x.shape
    (ho, wo), taps = _dense_taps(x.shape, (kh, kw, cin, cout), strides, pads)
    dy = dy.reshape(n, -1)
    dx = lax.dot_general(dy, weight, (((1,), (1,)), ((), ())),
                         preferred_element_type=jnp.float32)
    blocks = lax.dot_general(x.reshape(n, -1), dy, (((0,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)
    blocks = blocks.reshape(hi * wi, cin, ho * wo, cout)
    per_tap: dict = {}
    for pair, t in enumerate(taps):
        if t is not None:
            block = blocks[pair // (ho * wo), :, pair % (ho * wo)]
            per_tap[t] = block if t not in per_tap else per_tap[t] + block
    zero = jnp.zeros((cin, cout), jnp.float32)
    dw = jnp.stack([per_tap.get((ky, kx), zero) for ky in range(kh) for kx in range(kw)])
    return (dx.reshape(x.shape).astype(x.dtype),
            dw.reshape(kh, kw, cin, cout).astype(weight.dtype))


_dense_conv.defvjp(_dense_fwd, _dense_bwd)


def _xla_conv(x, w, strides, pads):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_matmul_weight_grad(x, w, strides, pads):
    """XLA's conv forward and input gradient; the weight gradient as patches^T @ dy."""
    return _xla_conv(x, w, strides, pads)


def _weight_grad_fwd(x, w, strides, pads):
    return _xla_conv(x, w, strides, pads), (x, w)


def _weight_grad_bwd(strides, pads, residuals, dy):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x_: _xla_conv(x_, w, strides, pads), x)
    (dx,) = input_vjp(dy)
    kh, kw, _, _ = w.shape
    cols = patches(x, kh, kw, strides, pads)
    dw = lax.dot_general(cols, dy, (((0, 1, 2), (0, 1, 2)), ((), ())),
                         preferred_element_type=jnp.float32)
    return dx, dw.reshape(w.shape).astype(w.dtype)


_conv_matmul_weight_grad.defvjp(_weight_grad_fwd, _weight_grad_bwd)


def _is_undilated_nhwc(lhs, rhs, dimension_numbers, lhs_dilation, rhs_dilation,
                       batch_group_count) -> bool:
    if lhs.ndim != 4:
        return False
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return (
        dn == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
        and batch_group_count == 1
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
    )


def explicit_pads(lhs_shape, kernel: tuple[int, int], strides: tuple[int, int],
                   padding: str | Sequence[tuple[int, int]]) -> Pads:
    """XLA's padding spec ("SAME", "VALID" or pairs) as explicit (low, high) pairs per side."""
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs_shape[1:3], kernel, strides, padding)
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def cpu_conv_general_dilated(
    lhs: jnp.ndarray,
    rhs: jnp.ndarray,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    *,
    onednn: bool = False,
) -> jnp.ndarray:
    """Drop-in `lax.conv_general_dilated` taking oneDNN or the matmul forms where XLA:CPU is slow.

    With `onednn`, float32 or bfloat16 convolutions go to oneDNN (grouped ones too) except
    ungrouped ones of at most `MAX_MATMUL_POSITIONS_ONEDNN` outputs, which the matmul form
    runs as fast; other dtype combinations (bfloat16 in, float32 out) keep the matmul
    routing, and anything else (dilation) XLA's convolution.
    """
    if _is_undilated_nhwc(lhs, rhs, dimension_numbers, lhs_dilation, rhs_dilation,
                          batch_group_count):
        strides = (int(window_strides[0]), int(window_strides[1]))
        kh, kw, cin, _ = rhs.shape
        pads = explicit_pads(lhs.shape, (kh, kw), strides, padding)
        _, ho, wo, _ = onednn_conv.output_shape(lhs.shape, rhs.shape, strides, pads)
        out_dtype = preferred_element_type or jnp.result_type(lhs, rhs)
        grouped = feature_group_count > 1
        if (onednn and (grouped or ho * wo > MAX_MATMUL_POSITIONS_ONEDNN)
                and min(min(pads)) >= 0 and lhs.dtype == rhs.dtype == out_dtype
                and out_dtype in (jnp.float32, jnp.bfloat16)
                and onednn_conv.supports(out_dtype)):
            return onednn_conv.conv(lhs, rhs, strides, pads)
        if not grouped and (ho * wo <= MAX_MATMUL_POSITIONS or kh == kw == 1):
            if (lhs.shape[1] * lhs.shape[2] < kh * kw and lhs.dtype == rhs.dtype == out_dtype):
                return _dense_conv(lhs, rhs, strides, pads)
            return _matmul_conv(lhs, rhs, strides, pads, out_dtype)
        if not grouped and cin <= MAX_STEM_CHANNELS and preferred_element_type is None:
            return _conv_matmul_weight_grad(lhs, rhs, strides, pads)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type,
    )


def conv_general_dilated_by_platform(lhs: jnp.ndarray, rhs: jnp.ndarray, *args: Any,
                                     onednn: bool = False, **kwargs: Any) -> jnp.ndarray:
    """`lax.conv_general_dilated` where the program is lowered for GPU/TPU, the CPU routing
    (`cpu_conv_general_dilated`) where it is lowered for CPU: both are traced, lowering keeps
    one, so no CPU-only custom call reaches an accelerator's program."""
    return lax.platform_dependent(
        lhs, rhs,
        cpu=lambda x, w: cpu_conv_general_dilated(x, w, *args, onednn=onednn, **kwargs),
        default=lambda x, w: lax.conv_general_dilated(x, w, *args, **kwargs))


def conv_general_dilated_for(impl: str) -> Callable[..., jnp.ndarray] | None:
    """The `nn.Conv(conv_general_dilated=...)` value for `impl` (None = flax's default).

    Accelerators keep XLA's convolution (cuDNN/TPU have no such slow spots): the routing
    applies only to programs lowered for CPU (`conv_general_dilated_by_platform`). There
    "onednn" requires the oneDNN FFI, "matmul" is the matmul routing alone, and "auto" takes
    oneDNN where it builds and the matmul routing otherwise, logging once which and why;
    a process whose default backend is not the CPU never builds oneDNN.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"model.conv_impl: expected one of {CONV_IMPLS}, got {impl!r}")
    if impl == "xla":
        return None
    on_cpu = jax.default_backend() == "cpu"
    if impl == "onednn" and on_cpu:
        onednn_conv.require()
    use_onednn = on_cpu and (impl == "onednn" or (impl == "auto" and _auto_onednn()))
    return functools.partial(conv_general_dilated_by_platform, onednn=use_onednn)


@functools.cache
def _auto_onednn() -> bool:
    state = onednn_conv.status()
    if state == "ready":
        logger.info("model.conv_impl=auto: oneDNN convolutions on CPU")
    else:
        logger.warning("model.conv_impl=auto: oneDNN unavailable, using XLA with matmul "
                       "routing (%s)", state)
    return state == "ready"
