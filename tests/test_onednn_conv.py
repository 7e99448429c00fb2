"""models.onednn_conv: oneDNN's convolution (FFI) equals XLA's in values and both gradients,
under jit and inside whole models; `auto` picks it on CPU when it builds."""

import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from agr_jax import models, tasks
from agr_jax.models import conv, flops, onednn_conv

pytestmark = pytest.mark.skipif(not onednn_conv.available(),
                                reason=f"oneDNN FFI unavailable: {onednn_conv.status()}")

# (input H, W, Cin, Cout, kernel, stride, padding)
CASES = [
    (9, 10, 5, 7, 3, 1, ((1, 1), (1, 1))),
    (9, 10, 5, 7, 3, 2, ((1, 1), (1, 1))),
    (16, 16, 3, 8, 7, 2, ((2, 3), (2, 3))),  # RGB stem, XLA's SAME padding at stride 2
    (7, 7, 4, 6, 3, 2, ((0, 1), (1, 0))),  # asymmetric
    (6, 5, 4, 5, 3, 1, ((0, 0), (0, 0))),  # VALID
    (12, 12, 16, 32, 5, 3, ((2, 2), (2, 2))),
]


def _xla(x, w, stride, pads):
    """XLA's convolution; grouped when the kernel has fewer input channels than `x`."""
    return lax.conv_general_dilated(x, w, (stride, stride), pads, dimension_numbers=conv.NHWC,
                                    feature_group_count=x.shape[-1] // w.shape[2])


def _onednn(x, w, stride, pads):
    return onednn_conv.conv(x, w, (stride, stride), pads)


def _check_against_xla(rng, x, w, stride, pads, calls: int = 1):
    """Values and both gradients of the oneDNN conv equal XLA's; the compiled oneDNN
    gradient is called `calls` times (later calls run cached primitives)."""
    want = _xla(x, w, stride, pads)
    got = jax.jit(_onednn, static_argnums=(2, 3))(x, w, stride, pads)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    cot = jnp.asarray(rng.normal(size=want.shape), jnp.float32)

    def grads(fn):
        return jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b, stride, pads) * cot),
                                argnums=(0, 1)))

    expected = grads(_xla)(x, w)
    onednn_grads = grads(_onednn)
    for _ in range(calls):
        for g, r in zip(onednn_grads(x, w), expected, strict=True):
            assert g.shape == r.shape
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("h,w_,cin,cout,k,stride,pads", CASES)
def test_values_and_gradients_match_xla(h, w_, cin, cout, k, stride, pads):
    rng = np.random.default_rng(h * cin + k)
    x = jnp.asarray(rng.normal(size=(3, h, w_, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
    _check_against_xla(rng, x, w, stride, pads)


@pytest.mark.parametrize("cin,stride,pads", [
    (4, 2, ((0, 0), (0, 0))),  # fewer channels than oneDNN's AVX2 block (8)
    (12, 2, ((0, 0), (0, 0))),  # fewer than the AVX-512 block (16)
    (3, 3, ((0, 1), (1, 0))),
    (24, 2, ((0, 0), (0, 0))),
])
def test_strided_1x1_weight_gradient_is_right_on_every_call(cin, stride, pads):
    """oneDNN's own strided 1x1 weight gradient (NHWC, few input channels) writes at a wrong
    workspace offset (uxlfoundation/oneDNN#6035): on AVX2 the first call was right and the
    next ones off by O(1), which made two same-seed trainings differ. Several calls each."""
    rng = np.random.default_rng(cin)
    x = jnp.asarray(rng.normal(size=(16, 8, 8, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(1, 1, cin, 32)), jnp.float32)
    _check_against_xla(rng, x, w, stride, pads, calls=4)


# (input side, Cin, Cout, groups, kernel, stride, padding)
GROUPED_CASES = [
    (9, 8, 8, 8, 3, 1, ((1, 1), (1, 1))),  # depthwise (Xception, MobileNet)
    (10, 6, 12, 6, 3, 2, ((0, 1), (0, 1))),  # depthwise x2 channels, strided, asymmetric
    (8, 6, 4, 2, 3, 1, ((1, 1), (1, 1))),  # two groups of 3 -> 2
    (7, 24, 24, 24, 5, 1, ((2, 2), (2, 2))),  # depthwise 5x5, more channels than a block
    (8, 8, 16, 4, 1, 2, ((0, 0), (0, 0))),  # grouped strided 1x1 (subsample route)
]


@pytest.mark.parametrize("side,cin,cout,groups,k,stride,pads", GROUPED_CASES)
def test_grouped_values_and_gradients_match_xla(side, cin, cout, groups, k, stride, pads):
    """Each group's outputs from its own inputs, in JAX's HWIO order (output channel
    g * cout / groups + j): a wrong weight stride would mix groups and fail here."""
    rng = np.random.default_rng(side * cin + groups)
    x = jnp.asarray(rng.normal(size=(3, side, side, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin // groups, cout)) / k, jnp.float32)
    _check_against_xla(rng, x, w, stride, pads, calls=2)  # the second from the primitive cache


def test_grouped_conv_with_channels_not_divisible_is_refused():
    x, w = jnp.ones((1, 4, 4, 6)), jnp.ones((3, 3, 4, 8))  # 6 input channels, kernel takes 4
    with pytest.raises(Exception, match="kernel input channels must divide"):
        jax.block_until_ready(onednn_conv.conv(x, w, (1, 1), ((1, 1), (1, 1))))


# oneDNN runs bfloat16 convolutions on AVX-512 CPUs and newer; elsewhere (e.g. an AVX2-only
# AMD EPYC) `supports` routes them to XLA, which the monkeypatched routing test below covers.
needs_bf16 = pytest.mark.skipif(not onednn_conv.supports(jnp.bfloat16),
                                reason="this CPU's oneDNN has no bfloat16 convolution")


@needs_bf16
@pytest.mark.parametrize("groups", [1, 8])  # plain, and grouped two input channels each
def test_bfloat16_matches_xla_within_bfloat16_rounding(groups):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 12, 12, 16)), jnp.bfloat16)
    w = jnp.asarray(rng.normal(size=(3, 3, 16 // groups, 24)) / 12, jnp.bfloat16)
    pads = ((1, 1), (1, 1))
    cot = jnp.asarray(rng.normal(size=(4, 12, 12, 24)), jnp.bfloat16)

    def value_and_grads(fn):
        def loss(a, b):
            return jnp.sum((fn(a, b, 1, pads) * cot).astype(jnp.float32))
        y = jax.jit(fn, static_argnums=(2, 3))(x, w, 1, pads)
        return (y, *jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w))

    for got, want in zip(value_and_grads(_onednn), value_and_grads(_xla), strict=True):
        assert got.dtype == want.dtype == jnp.bfloat16 and got.shape == want.shape
        scale = float(jnp.max(jnp.abs(want.astype(jnp.float32))))
        np.testing.assert_allclose(np.float32(got), np.float32(want), atol=2e-2 * scale)


def test_routing_sends_plain_convs_to_onednn_only():
    def path(x, w, **kw):
        return str(jax.make_jaxpr(lambda a, b: conv.cpu_conv_general_dilated(
            a, b, (1, 1), "SAME", dimension_numbers=conv.NHWC, onednn=True, **kw))(x, w))

    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    assert onednn_conv.TARGETS["forward"] in path(x, w)
    if onednn_conv.supports(jnp.bfloat16):
        assert onednn_conv.TARGETS["forward"] in path(x.astype(jnp.bfloat16),
                                                      w.astype(jnp.bfloat16))
    assert onednn_conv.TARGETS["forward"] not in path(  # bfloat16 in, float32 out
        x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    # Depthwise: oneDNN at every size (XLA:CPU's grouped convs are its slowest).
    assert onednn_conv.TARGETS["forward"] in path(x, jnp.ones((3, 3, 1, 4)),
                                                  feature_group_count=4)
    assert onednn_conv.TARGETS["forward"] in path(x[:, :2, :2], jnp.ones((3, 3, 1, 4)),
                                                  feature_group_count=4)
    assert onednn_conv.TARGETS["forward"] not in path(x[:, :2, :2], w)  # 4 outputs: matmul


def test_dtype_this_cpu_cannot_run_keeps_the_matmul_routing(monkeypatch):
    assert onednn_conv.supports.__wrapped__(jnp.float32)  # the real probe, uncached
    monkeypatch.setattr(onednn_conv, "supports", lambda dtype: dtype != jnp.bfloat16)
    x, w = jnp.ones((2, 8, 8, 4), jnp.bfloat16), jnp.ones((3, 3, 4, 4), jnp.bfloat16)
    jaxpr = str(jax.make_jaxpr(lambda a, b: conv.cpu_conv_general_dilated(
        a, b, (1, 1), "SAME", dimension_numbers=conv.NHWC, onednn=True))(x, w))
    assert onednn_conv.TARGETS["forward"] not in jaxpr and "conv_general_dilated" in jaxpr


@pytest.mark.parametrize("name,kwargs", [
    ("resnet18", dict(width=1 / 8)),
    ("mobilenet", dict(alpha=0.25, num_blocks=4)),  # depthwise, strided with Keras padding
])
def test_whole_model_trains_the_same_and_counts_the_same_flops(caplog, fast_jit, name, kwargs):
    """A model under `auto` (oneDNN here) against XLA's own convs: outputs, gradients of a
    training-mode loss (batch statistics), and the analytic FLOP count."""
    spec = tasks.TaskSpec()
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 48, 48, 3)), jnp.uint8)
    conv._auto_onednn.cache_clear()
    with caplog.at_level(logging.INFO, logger=conv.__name__):
        fast, ref = (models.build(name, outputs=spec.output_sizes(), conv_impl=impl, **kwargs)
                     for impl in ("auto", "xla"))
        variables = fast_jit(ref.init)(jax.random.key(0), images)
        fast_jit(fast.apply)(variables, images)
    assert "oneDNN convolutions on CPU" in caplog.text
    assert onednn_conv.TARGETS["forward"] in str(jax.make_jaxpr(fast.apply)(variables, images))

    def loss(model, params):
        (logits, _), updates = model.apply({**variables, "params": params}, images,
                                           train=True, mutable=["batch_stats"])
        return sum(jnp.sum(v ** 2) for v in logits.values()), (logits, updates)

    def outputs_and_grads(model):
        return jax.jit(jax.grad(lambda p: loss(model, p), has_aux=True))(variables["params"])

    (got, got_out), (want, want_out) = outputs_and_grads(fast), outputs_and_grads(ref)
    # Outputs: every task's logits and the updated BatchNorm statistics.
    assert jax.tree.structure(got_out) == jax.tree.structure(want_out)
    for a, b in zip(jax.tree.leaves(got_out), jax.tree.leaves(want_out), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
    assert flops.forward_flops(fast, 48) == flops.forward_flops(ref, 48)


@pytest.mark.parametrize("which,error", [
    (0, "oneDNN: test: dnnl::error"),
    (1, "oneDNN conv: out of memory"),
    (2, "oneDNN conv: test: std::runtime_error"),
    (3, "oneDNN conv: unknown C++ exception"),
])
def test_every_cpp_exception_becomes_a_python_error_not_an_abort(which, error):
    """One that escaped the FFI handler would abort this process (and the test run)."""
    call = jax.ffi.ffi_call(onednn_conv.TARGETS["throw_for_test"],
                            jax.ShapeDtypeStruct((1,), jnp.float32))
    with pytest.raises(Exception, match=re.escape(error)):
        jax.block_until_ready(call(which=np.int64(which)))


def test_build_key_changes_with_jaxlib_and_the_compiler(tmp_path, monkeypatch):
    """A cached library built against other FFI headers or by another compiler is not
    reused."""
    root = tmp_path / "onednn"
    (root / "lib").mkdir(parents=True)
    (root / "lib/libdnnl.so").write_bytes(b"stand-in")

    def compiler(version: str) -> str:
        path = tmp_path / f"cxx-{version}"
        path.write_text(f"#!/bin/sh\necho 'g++ (fake) {version}'\n")
        path.chmod(0o755)
        return str(path)

    old = onednn_conv._build_key(compiler("12.2.0"), root)
    assert onednn_conv._build_key(compiler("12.2.0"), root) == old  # stable
    assert onednn_conv._build_key(compiler("13.1.0"), root) != old
    monkeypatch.setattr(onednn_conv.jaxlib, "__version__", "0.0.0-other")
    assert onednn_conv._build_key(compiler("12.2.0"), root) != old
