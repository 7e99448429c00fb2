"""Keras applications weights (.h5, read with h5py; no TensorFlow) -> agr_jax backbone params.

Supported backbones: xception, resnet50, inception_v3, mobilenet, vgg19 (the `agr_jax.models`
modules mirror the Keras layouts layer for layer). Both file layouts are read:
- legacy Keras 2 files, e.g. `xception_weights_tf_dim_ordering_tf_kernels_notop.h5`
  (root attrs `layer_names`, per layer `weight_names`), and
- Keras 3 `.weights.h5` (`layers/<class>_<n>/vars/<i>`, from `model.save_weights`).

Where the official files live (download them yourself; nothing here fetches):
  https://storage.googleapis.com/tensorflow/keras-applications/xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5
  .../resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
  .../inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5
  .../mobilenet/mobilenet_1_0_224_tf_no_top.h5
  .../vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
(`keras.applications.Xception(weights="imagenet", include_top=False)` caches the same file
under ~/.keras/models/.) Convert:
  python -m agr_jax.convert keras --model xception \
      --weights xception_weights_tf_dim_ordering_tf_kernels_notop.h5 --out weights/xception

Layers are paired by kind (conv, depthwise, separable, BatchNorm, dense) in order: the Keras
file keeps creation order (legacy: `layer_names`; Keras 3: the per-class counter in the group
name), the Flax side the order of the forward pass. Every pair is checked by shape.
Preprocessing note: Keras' ImageNet weights expect their own input scaling ("tf" mode [-1, 1]
for xception/inception_v3/mobilenet, "caffe" BGR mean-subtracted for resnet50/vgg19); the
agr_jax models feed [-1, 1], so fine-tuning adapts resnet50/vgg19 to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from agr_jax.convert import _tree

BACKBONES = ("xception", "resnet50", "inception_v3", "mobilenet", "vgg19")
# Smallest input each backbone accepts; converting only traces shapes, so the size is free.
TRACE_SIZE = {"xception": 71, "inception_v3": 75, "resnet50": 32, "mobilenet": 32, "vgg19": 32}
# Keras 3 group name prefix (snake-case class) -> layer kind.
KERAS3_KINDS = {
    "conv2d": "conv",
    "depthwise_conv2d": "depthwise",
    "separable_conv2d": "separable",
    "batch_normalization": "bn",
    "dense": "dense",
}


@dataclasses.dataclass
class KerasLayer:
    name: str
    kind: str
    weights: dict[str, np.ndarray]  # role (kernel, bias, gamma, ...) -> array


def _role(weight_name: str) -> str:
    """'block1_conv1/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":")[0]


def _legacy_kind(roles: dict[str, np.ndarray]) -> str:
    if "pointwise_kernel" in roles:
        return "separable"
    if "depthwise_kernel" in roles:  # TF-Keras DepthwiseConv2D (Keras 3 calls it "kernel")
        return "conv"
    if "moving_mean" in roles:
        return "bn"
    if "kernel" in roles:
        return "conv" if roles["kernel"].ndim == 4 else "dense"
    return "other"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_legacy(root: h5py.Group) -> list[KerasLayer]:
    layers = []
    for raw in root.attrs["layer_names"]:
        name = _text(raw)
        group = root[name]
        names = [_text(n) for n in group.attrs["weight_names"]]
        if not names:
            continue
        roles = {_role(n): np.asarray(group[n]) for n in names}
        layers.append(KerasLayer(name, _legacy_kind(roles), roles))
    return layers


_KERAS3_ROLES = {
    "conv": ("kernel", "bias"),
    "depthwise": ("depthwise_kernel", "bias"),
    "separable": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "dense": ("kernel", "bias"),
}


def _keras3_roles(kind: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    if kind == "bn":  # gamma only when scale=True: 3 vectors mean center-only
        names = ("gamma", "beta", "moving_mean", "moving_variance")[4 - len(arrays) :]
        return dict(zip(names, arrays, strict=True))
    return dict(zip(_KERAS3_ROLES[kind], arrays, strict=False))


def _read_keras3(root: h5py.Group) -> list[KerasLayer]:
    """Keras 3 names groups `<class>` or `<class>_<n>` in the order layers were saved."""
    ordered = []
    for group_name, group in root["layers"].items():
        match = re.fullmatch(r"([a-z0-9_]+?)(?:_(\d+))?", group_name)
        vars_ = group.get("vars")
        if match is None or vars_ is None or not len(vars_):
            continue
        kind = KERAS3_KINDS.get(match.group(1), "other")
        arrays = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
        name = str(vars_.attrs.get("name", group_name))
        roles = _keras3_roles(kind, arrays) if kind != "other" else {}
        ordered.append((match.group(1), int(match.group(2) or 0), KerasLayer(name, kind, roles)))
    ordered.sort(key=lambda t: (t[0], t[1]))
    return [layer for _, _, layer in ordered]


def read_layers(path: str | Path) -> tuple[list[KerasLayer], bool]:
    """The weight-holding layers of a Keras weights file and whether their order is global.

    Legacy files list layers in model order, but name a depthwise kernel either
    "depthwise_kernel" (TF-Keras) or "kernel" (Keras 3), so plain and depthwise convs share
    the kind "conv" there and are told apart by the Flax layer they pair with. Keras 3 files
    give the class but only the order within it."""
    with h5py.File(path, "r") as f:
        if "layers" in f and "layer_names" not in f.attrs:
            return _read_keras3(f), False
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(
                f"{path}: neither a Keras 3 .weights.h5 (no 'layers' group) nor a legacy "
                "Keras weights file (no 'layer_names' attribute)"
            )
        return _read_legacy(root), True


def _assign(layer: KerasLayer, target: _tree.Layer, template: dict, out: dict) -> None:
    """Put one Keras layer's arrays at the Flax layer's paths (shapes checked later)."""
    p, w = target.path, layer.weights
    params = lambda *leaf: ("params", *p, *leaf)
    if target.kind == "bn":
        flax_params = _tree.get_in(template["params"], p)
        if "scale" in flax_params:
            _tree.set_in(out, params("scale"), w.get("gamma", np.ones_like(w["moving_mean"])))
        _tree.set_in(out, params("bias"), w.get("beta", np.zeros_like(w["moving_mean"])))
        _tree.set_in(out, ("batch_stats", *p, "mean"), w["moving_mean"])
        _tree.set_in(out, ("batch_stats", *p, "var"), w["moving_variance"])
        return
    if target.kind == "separable":
        _tree.set_in(out, params("depthwise", "kernel"), _depthwise(w["depthwise_kernel"]))
        _tree.set_in(out, params("pointwise", "kernel"), w["pointwise_kernel"])
        if "bias" in w:
            _tree.set_in(out, params("pointwise", "bias"), w["bias"])
        return
    kernel = w["depthwise_kernel"] if "depthwise_kernel" in w else w["kernel"]
    kernel = _depthwise(kernel) if target.kind == "depthwise" else kernel
    _tree.set_in(out, params("kernel"), kernel)
    if "bias" in w:
        _tree.set_in(out, params("bias"), w["bias"])


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise (kh, kw, C, m) -> Flax grouped conv (kh, kw, 1, C*m); both order the
    outputs channel-major (c*m + j)."""
    kh, kw, c, m = kernel.shape
    return kernel.reshape(kh, kw, 1, c * m)


def keras_name(backbone: str, path: tuple[str, ...]) -> str:
    """The Keras layer name of a Flax layer path (where Keras names the layer at all)."""
    if backbone == "resnet50":
        stem = {"stem_conv": "conv1_conv", "stem_bn": "conv1_bn"}
        if path[0] in stem:
            return stem[path[0]]
        stage, block = re.fullmatch(r"stage(\d+)_block(\d+)", path[0]).groups()
        layer = re.fullmatch(r"(conv|bn|proj_conv|proj_bn)(\d*)", path[1])
        kind, index = layer.groups()
        index = index or "0"
        return f"conv{int(stage) + 1}_block{block}_{index}_{'bn' if 'bn' in kind else 'conv'}"
    return "_".join(path)


def pair_layers(
    source: list[KerasLayer],
    targets: list[_tree.Layer],
    backbone: str,
    global_order: bool,
    where: str | Path,
) -> list[tuple[KerasLayer, _tree.Layer]]:
    """Pair layers by Keras name first; the rest, which Keras auto-named (`conv2d_7`), by kind
    in creation order: the number Keras appended to the name counts creations (files list
    layers in graph order, which for branching models such as InceptionV3 is not the order
    the Flax model calls them). Depthwise and plain convs share one kind in legacy files."""
    group = lambda kind: "conv" if global_order and kind == "depthwise" else kind
    by_name = {layer.name: layer for layer in source}
    pairs, used = [], set()
    rest_flax = []
    for target in targets:
        match = by_name.get(keras_name(backbone, target.path))
        if match is not None and match.kind == group(target.kind):
            pairs.append((match, target))
            used.add(id(match))
        else:
            rest_flax.append(target)
    rest_keras = [layer for layer in source if id(layer) not in used and layer.kind != "other"]
    for kind in ("conv", "depthwise", "separable", "bn", "dense"):
        theirs = sorted((la for la in rest_keras if la.kind == kind), key=_creation_index)
        ours = [layer for layer in rest_flax if group(layer.kind) == kind]
        if len(theirs) != len(ours):
            raise ValueError(
                f"{where}: {len(theirs)} {kind} layers left after matching names, but "
                f"{backbone} has {len(ours)}; is this the {backbone} notop file?"
            )
        pairs.extend(zip(theirs, ours, strict=True))
    return pairs


def _creation_index(layer: KerasLayer) -> int:
    """'conv2d_12' -> 12, 'conv2d' -> 0 (Keras' per-class counter of auto-named layers)."""
    match = re.search(r"_(\d+)$", layer.name)
    return int(match.group(1)) if match else 0


def convert(name: str, weights: str | Path, **options: Any) -> dict[str, Any]:
    """Keras weights file -> {"params": ..., "batch_stats": ...} of backbone `name`."""
    if name not in BACKBONES:
        raise ValueError(f"--model: expected one of {BACKBONES}, got {name!r}")
    size = TRACE_SIZE[name]
    template = _tree.backbone_variables(name, size, **options)
    targets = _tree.layer_order(name, size, **options)
    source, global_order = read_layers(weights)
    out: dict[str, Any] = {}
    for keras_layer, flax_layer in pair_layers(source, targets, name, global_order, weights):
        try:
            _assign(keras_layer, flax_layer, template, out)
        except KeyError as e:
            raise ValueError(
                f"{weights}: layer {keras_layer.name!r} has no weight {e} "
                f"(has {sorted(keras_layer.weights)})"
            ) from None
    _tree.check_complete(out, template, str(weights))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agr_jax.convert keras", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, choices=BACKBONES)
    parser.add_argument("--weights", required=True, help="Keras .h5 or .weights.h5 file")
    parser.add_argument("--out", required=True, help="output Orbax directory")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = _tree.save(convert(args.model, args.weights), args.out)
    print(f"wrote {out} (config.init.checkpoint={out})")
    return 0
