"""models.conv: the CPU routing computes XLA's convolution (values and both gradients), and
the in-model pixel normalisation matches the float path."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from agr_jax import models, tasks
from agr_jax.models import conv, onednn_conv
from agr_jax.models.heads import normalize_pixels

# (input HxW, Cin, Cout, kernel, stride, padding, the path it must take)
CASES = [
    ((2, 2), 8, 6, 3, 1, "SAME", "dense"),  # 2x2 map, 3x3 kernel: the last stage at 64 px
    ((1, 2), 4, 5, 3, 1, "SAME", "dense"),  # non-square, one row
    ((2, 2), 8, 6, 3, 2, [(1, 1), (1, 1)], "dense"),  # strided, 1x1 output
    ((2, 3), 4, 5, 3, 1, [(0, 1), (1, 0)], "dense"),  # asymmetric padding
    ((8, 8), 8, 6, 3, 2, "SAME", "matmul"),  # 4x4 output, strided
    ((7, 7), 5, 6, 3, 2, [(0, 1), (0, 1)], "matmul"),  # explicit asymmetric padding
    ((4, 4), 8, 6, 1, 1, "VALID", "matmul"),  # 1x1 conv
    ((12, 12), 8, 6, 1, 2, "SAME", "matmul"),  # strided 1x1 projection, 6x6 output
    ((16, 16), 3, 6, 7, 2, [(3, 3), (3, 3)], "weight_grad"),  # RGB stem
    ((12, 12), 8, 6, 3, 1, "SAME", "xla"),  # everything else stays XLA's
]


def _reference(x, w, stride, padding):
    return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                    dimension_numbers=conv.NHWC)


def _routed(x, w, stride, padding):
    return conv.cpu_conv_general_dilated(x, w, (stride, stride), padding,
                                         dimension_numbers=conv.NHWC)


def _path(x, w, stride, padding) -> str:
    jaxpr = str(jax.make_jaxpr(lambda a, b: _routed(a, b, stride, padding))(x, w))
    if "custom_vjp_call" in jaxpr:
        return "dense" if "_dense_conv" in jaxpr else "weight_grad"
    return "xla" if "conv_general_dilated" in jaxpr else "matmul"


@pytest.mark.parametrize("hw,cin,cout,k,stride,padding,path", CASES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_routed_conv_matches_xla_values_and_gradients(hw, cin, cout, k, stride, padding, path,
                                                      dtype, fast_jit):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, *hw, cin)), dtype)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), dtype)
    assert _path(x, w, stride, padding) == path
    y_ref, y = _reference(x, w, stride, padding), _routed(x, w, stride, padding)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    tol = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(np.float32(y), np.float32(y_ref), rtol=tol, atol=tol)

    cot = jnp.asarray(rng.normal(size=y.shape), dtype)

    def grads(fn):
        return fast_jit(jax.grad(lambda a, b: jnp.sum((fn(a, b, stride, padding) * cot)
                                                      .astype(jnp.float32)), argnums=(0, 1)))(x, w)

    for got, want in zip(grads(_routed), grads(_reference), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=tol, atol=tol * 4)


def test_unsupported_layouts_fall_through_to_xla():
    """Without oneDNN, grouped (depthwise) convs keep XLA's own implementation: the matmul
    forms (and the stem's patches weight gradient) are for ungrouped kernels only."""
    w = jnp.ones((3, 3, 1, 4))
    for side in (2, 8):  # a 2x2 map (matmul size) and an 8x8 one (one input channel per group)
        x = jnp.ones((2, side, side, 4))
        jaxpr = str(jax.make_jaxpr(lambda a, b: conv.cpu_conv_general_dilated(
            a, b, (1, 1), "SAME", dimension_numbers=conv.NHWC, feature_group_count=4))(x, w))
        assert "conv_general_dilated" in jaxpr
        assert "dot_general" not in jaxpr and "custom_vjp" not in jaxpr


def test_conv_impl_choice_and_error():
    assert conv.conv_general_dilated_for("xla") is None
    with pytest.raises(ValueError, match="model.conv_impl"):
        conv.conv_general_dilated_for("fast")
    matmul = conv.conv_general_dilated_for("matmul")
    assert matmul.func is conv.conv_general_dilated_by_platform
    assert matmul.keywords == {"onednn": False}
    auto = conv.conv_general_dilated_for("auto")  # oneDNN only in a CPU-backend process
    on_cpu = jax.default_backend() == "cpu"
    assert auto.keywords == {"onednn": on_cpu and onednn_conv.available()}


def test_without_onednn_auto_falls_back_and_onednn_refuses(monkeypatch, caplog):
    """No oneDNN (no wheel, no compiler): "auto" says why and takes the matmul routing;
    asking for "onednn" outright is an error naming the reason."""
    monkeypatch.setattr(onednn_conv, "_load",
                        lambda: onednn_conv.OneDnnUnavailable("no oneDNN here"))
    conv._auto_onednn.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=conv.__name__):
            auto = conv.conv_general_dilated_for("auto")
        if jax.default_backend() == "cpu":
            assert auto.keywords == {"onednn": False}
            assert "no oneDNN here" in caplog.text
            with pytest.raises(onednn_conv.OneDnnUnavailable, match="no oneDNN here"):
                conv.conv_general_dilated_for("onednn")
    finally:
        conv._auto_onednn.cache_clear()


def test_missing_onednn_install_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(onednn_conv.ROOT_ENV, str(tmp_path))
    with pytest.raises(onednn_conv.OneDnnUnavailable, match="onednn-cpu-gomp"):
        onednn_conv._onednn_root()


def test_resnet_same_outputs_and_gradients_under_both_impls(fast_jit):
    """Same parameters, same maths: a checkpoint trained with one impl serves the other.
    Jitted: op by op, a ResNet-18 compiles every primitive on its own (~80 s)."""
    spec = tasks.TaskSpec()
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (2, 32, 32, 3)), jnp.uint8)
    auto, xla = (models.build("resnet18", outputs=spec.output_sizes(), width=1 / 16,
                              conv_impl=impl) for impl in ("matmul", "xla"))
    variables = fast_jit(xla.init)(jax.random.key(0), images)

    def loss(model, params):
        # Inference-mode BN: batch statistics of 2 images would amplify rounding differences.
        logits, _ = model.apply({**variables, "params": params}, images)
        return sum(jnp.sum(v) for v in logits.values())

    def grads(model):
        return jax.tree.leaves(fast_jit(jax.grad(lambda p: loss(model, p)))(variables["params"]))

    for a, b in zip(grads(auto), grads(xla), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_uint8_pixels_are_normalised_in_the_model(fast_jit):
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    expected = (pixels.astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(normalize_pixels(jnp.asarray(pixels)), expected, atol=1e-6)
    floats = jnp.asarray(expected)
    assert normalize_pixels(floats) is floats  # already normalised: untouched

    model = models.build("ror", outputs=tasks.TaskSpec().output_sizes(), width=4,
                         stage_sizes=(1, 1))
    variables = fast_jit(model.init)(jax.random.key(0), floats)
    (from_uint8, _), (from_float, _) = (fast_jit(model.apply)(variables, x)
                                        for x in (pixels, floats))
    for task in from_uint8:
        np.testing.assert_allclose(from_uint8[task], from_float[task], rtol=1e-5, atol=1e-6)
