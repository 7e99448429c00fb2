"""TF.js importer: a tiny MobileNet-shaped graph model written here (model.json + .bin with
float16 and uint8-quantised weights; the three conv forms: Conv2D + Add + Relu/Minimum/Maximum,
DepthwiseConv2dNative + Mul + Add + Relu6, _FusedConv2D with BiasAdd+Relu6), converted, must
compute what a numpy reading of the same graph computes; the pinned sha256 check refuses
other bytes unless skipped."""

import base64
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agr_jax import models
from agr_jax.convert import tfjs
from agr_jax.models.heads import normalize_pixels

SIZE = 8


def b64(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def strides(s: int) -> dict:
    return {"list": {"i": ["1", str(s), str(s), "1"]}}


def tiny_graph(tmp_path, rng):
    """Writes the graph; returns (json path, dequantised weights the graph computes with)."""
    k1 = rng.normal(0, 0.02, (3, 3, 3, 4)).astype(np.float32)  # stored float16
    b1 = rng.normal(0, 0.5, (4,)).astype(np.float32)
    dw = rng.uniform(-1, 1, (3, 3, 4, 1)).astype(np.float32)  # stored uint8
    dw_scale = rng.uniform(0.5, 1.5, (4,)).astype(np.float32)
    dw_bias = rng.normal(0, 0.5, (4,)).astype(np.float32)
    pw = rng.normal(0, 0.5, (1, 1, 4, 8)).astype(np.float32)
    pw_bias = rng.normal(0, 0.5, (8,)).astype(np.float32)
    six, zero = np.float32(6), np.float32(0)

    q_min, q_scale = float(dw.min()), float(dw.max() - dw.min()) / 255
    dw_q = np.round((dw - q_min) / q_scale).astype(np.uint8)
    stored = [  # (name, array, quantization)
        ("conv1/kernel", k1.astype(np.float16), {"dtype": "float16"}),
        ("conv1/bias", b1, None),
        ("relu/six", six, None),
        ("relu/zero", zero, None),
        ("dw/kernel", dw_q, {"dtype": "uint8", "min": q_min, "scale": q_scale}),
        ("dw/mul", dw_scale, None),
        ("dw/sub", dw_bias, None),
        ("pw/kernel", pw, None),
        ("pw/bias", pw_bias, None),
    ]
    manifest, data = [], b""
    for name, array, quant in stored:
        spec = {"name": name, "shape": list(np.shape(array)), "dtype": "float32"}
        if quant:
            spec["quantization"] = {**quant, "original_dtype": "float32"}
        manifest.append(spec)
        data += np.ascontiguousarray(array).tobytes()
    nodes = [
        {"name": "input", "op": "Placeholder"},
        *({"name": name, "op": "Const"} for name, _, _ in stored),
        {"name": "c1", "op": "Conv2D", "input": ["input", "conv1/kernel"],
         "attr": {"strides": strides(2), "padding": b64("SAME")}},
        {"name": "c1_add", "op": "Add", "input": ["c1", "conv1/bias"]},
        {"name": "c1_relu", "op": "Relu", "input": ["c1_add"]},
        {"name": "c1_min", "op": "Minimum", "input": ["c1_relu", "relu/six"]},
        {"name": "c1_max", "op": "Maximum", "input": ["c1_min", "relu/zero"]},
        {"name": "d1", "op": "DepthwiseConv2dNative", "input": ["c1_max", "dw/kernel"],
         "attr": {"strides": strides(1), "padding": b64("SAME")}},
        {"name": "d1_mul", "op": "Mul", "input": ["d1", "dw/mul"]},
        {"name": "d1_add", "op": "Add", "input": ["d1_mul", "dw/sub"]},
        {"name": "d1_relu6", "op": "Relu6", "input": ["d1_add"]},
        {"name": "p1", "op": "_FusedConv2D", "input": ["d1_relu6", "pw/kernel", "pw/bias"],
         "attr": {"strides": strides(1), "padding": b64("SAME"),
                  "fused_ops": {"list": {"s": [b64("BiasAdd")["s"], b64("Relu6")["s"]]}}}},
    ]  # fmt: skip
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["tiny.bin"], "weights": manifest}],
    }
    (tmp_path / "tiny.bin").write_bytes(data)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    dequantised = dict(
        k1=k1.astype(np.float16).astype(np.float32), b1=b1,
        dw=dw_q.astype(np.float32) * q_scale + q_min, dw_scale=dw_scale, dw_bias=dw_bias,
        pw=pw, pw_bias=pw_bias,
    )  # fmt: skip
    return path, dequantised


def conv_same(x, kernel, stride, depthwise=False):
    """TF 'SAME' convolution in numpy (NHWC, HWIO or depthwise HWC1)."""
    kh, kw = kernel.shape[:2]
    n, h, w, _ = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + kh - h, 0)
    pad_w = max((out_w - 1) * stride + kw - w, 0)
    x = np.pad(
        x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            if depthwise:
                out = out + patch * kernel[i, j, :, 0]
            else:
                out = out + patch @ kernel[i, j]
    return out


def reference(x, w):
    relu6 = lambda v: np.clip(v, 0, 6)
    x = relu6(conv_same(x, w["k1"], 2) + w["b1"])
    x = relu6(conv_same(x, w["dw"], 1, depthwise=True) * w["dw_scale"] + w["dw_bias"])
    return relu6(conv_same(x, w["pw"], 1) + w["pw_bias"])


@pytest.fixture
def graph(tmp_path):
    return tiny_graph(tmp_path, np.random.default_rng(0))


def test_reader_dequantises_float16_and_uint8(graph):
    path, w = graph
    weights = tfjs.read_graph_model(path).weights
    np.testing.assert_array_equal(weights["conv1/kernel"], w["k1"])
    np.testing.assert_allclose(weights["dw/kernel"], w["dw"], rtol=0, atol=1e-6)


def test_converted_tiny_graph_computes_the_graph(graph):
    path, w = graph
    variables = tfjs.convert(path, input_range="as_is", input_channels="as_is", sha256=None)
    backbone = models.BACKBONES["mobilenet"](alpha=0.125, num_blocks=1, conv_impl="xla")
    pixels = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
    x = pixels.astype(np.float32)
    got = np.asarray(jax.jit(lambda v, x: backbone.apply(v, x))(variables, x))
    np.testing.assert_allclose(got, reference(x, w), rtol=0, atol=1e-4)

    # 0..255 BGR folded into the first conv: our RGB uint8 -> [-1, 1] input reads what the
    # graph reads from BGR 0..255, except where the graph's zero padding (our -1) reaches.
    folded = tfjs.convert(path, input_range="0_255", input_channels="bgr", sha256=None)
    ours = np.asarray(
        jax.jit(lambda v, x: backbone.apply(v, normalize_pixels(x)))(folded, jnp.asarray(pixels))
    )
    expected = reference(x[..., ::-1], w)[:, :2, :2]
    np.testing.assert_allclose(ours[:, :2, :2], expected, rtol=0, atol=1e-4)


def test_a_graph_that_is_not_a_mobilenet_chain_is_refused(graph, tmp_path):
    path, _ = graph
    model = json.loads(path.read_text())
    model["modelTopology"]["node"] = [
        n for n in model["modelTopology"]["node"] if n["name"] != "p1"
    ]
    path.write_text(json.dumps(model))
    with pytest.raises(ValueError, match="graph has 2 convs"):
        tfjs.convert(path, sha256=None)


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_the_files_must_have_the_pinned_sha256(graph, tmp_path):
    path, _ = graph
    pinned = digests(tmp_path)
    tfjs.convert(path, sha256=pinned)  # the pinned bytes: accepted

    shard = tmp_path / "tiny.bin"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1  # same length, so only the digest can tell
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError) as e:
        tfjs.convert(path, sha256=pinned)
    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert f"{shard}: sha256 {actual}, expected {pinned['tiny.bin']}" in str(e.value)
    assert "--skip_sha256" in str(e.value)
    tfjs.convert(path, sha256=None)  # unchecked, the same bytes still convert


def test_the_cli_checks_faceres_by_default_and_skips_on_request(graph, tmp_path):
    path, _ = graph
    out = tmp_path / "converted"
    with pytest.raises(ValueError, match=r"model.json: no pinned sha256 .*faceres.bin, faceres"):
        tfjs.main(["--graph", str(path), "--out", str(out)])
    assert not out.exists()
    assert tfjs.main(["--graph", str(path), "--out", str(out), "--skip_sha256"]) == 0
    assert out.exists()
