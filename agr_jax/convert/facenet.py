"""facenet-pytorch `InceptionResnetV1` state_dicts -> agr_jax `inception_resnet_v1` params.

The official files (MIT, timesler/facenet-pytorch; converted from davidsandberg/facenet) are
downloaded by `InceptionResnetV1(pretrained=...)` into ~/.cache/torch/checkpoints/, or fetch
them yourself:
  https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt
  https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt
Convert (needs torch only to read the file):
  python -m agr_jax.convert facenet --weights 20180402-114759-vggface2.pt --out weights/facenet
and train with `model.embedding_size = 512` (configs/facenet_vggface2.py).

Mapping: torch NCHW kernels (O, I, kh, kw) -> Flax (kh, kw, I, O); Linear (out, in) -> (in, out).
facenet-pytorch's BatchNorms are affine while ours have no scale (the TF original's): a
positive gamma is folded exactly into the variance, var' = (var + eps) / gamma^2 - eps.
facenet-pytorch standardises pixels as (p - 127.5) / 128, agr_jax feeds (p - 127.5) / 127.5:
the first kernel is multiplied by 127.5 / 128 so the converted net sees what it was trained on.
The classifier `logits.*` (identities) is dropped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from agr_jax.convert import _tree

BN_EPSILON = 1e-3  # facenet-pytorch and agr_jax.models.inception_resnet_v1
PIXEL_SCALE_FIX = 127.5 / 128.0  # their (p - 127.5) / 128 from our (p - 127.5) / 127.5
STEM = {"conv2d_1a": "conv1a", "conv2d_2a": "conv2a", "conv2d_2b": "conv2b",
        "conv2d_3b": "conv3b", "conv2d_4a": "conv4a", "conv2d_4b": "conv4b"}  # fmt: skip
BRANCHES = {  # block kind -> torch branch path -> our suffix
    "block35": {"branch0": "b0", "branch1.0": "b1a", "branch1.1": "b1b",
                "branch2.0": "b2a", "branch2.1": "b2b", "branch2.2": "b2c"},
    "block17": {"branch0": "b0", "branch1.0": "b1a", "branch1.1": "b1b", "branch1.2": "b1c"},
    "block8": {"branch0": "b0", "branch1.0": "b1a", "branch1.1": "b1b", "branch1.2": "b1c"},
    "red_a": {"branch0": "b0", "branch1.0": "b1a", "branch1.1": "b1b", "branch1.2": "b1c"},
    "red_b": {"branch0.0": "b0a", "branch0.1": "b0b", "branch1.0": "b1a", "branch1.1": "b1b",
              "branch2.0": "b2a", "branch2.1": "b2b", "branch2.2": "b2c"},
}  # fmt: skip


def layer_names(repeats: tuple[int, int, int] = (5, 10, 5)) -> dict[str, str]:
    """torch module prefix -> our layer name, for every conv(+BN) and up-projection."""
    names = dict(STEM)
    stages = (("repeat_1", "block35", repeats[0]), ("repeat_2", "block17", repeats[1]),
              ("repeat_3", "block8", repeats[2]))  # fmt: skip
    for torch_name, kind, count in stages:
        for i in range(count):
            ours = f"{kind}_{i + 1}"
            for branch, suffix in BRANCHES[kind].items():
                names[f"{torch_name}.{i}.{branch}"] = f"{ours}_{suffix}"
            names[f"{torch_name}.{i}.conv2d"] = f"{ours}_up"
    names.update({f"block8.{b}": f"block8_final_{s}" for b, s in BRANCHES["block8"].items()})
    names["block8.conv2d"] = "block8_final_up"
    names.update({f"mixed_6a.{b}": f"red_a_{s}" for b, s in BRANCHES["red_a"].items()})
    names.update({f"mixed_7a.{b}": f"red_b_{s}" for b, s in BRANCHES["red_b"].items()})
    return names


def _fold_gamma(var: np.ndarray, gamma: np.ndarray, where: str) -> np.ndarray:
    if np.any(gamma <= 0):
        raise ValueError(f"{where}.weight: a BatchNorm gamma <= 0 cannot be folded into a "
                         "scale-free BatchNorm")  # fmt: skip
    return (var + BN_EPSILON) / np.square(gamma) - BN_EPSILON


def convert_state_dict(state: dict[str, Any], embedding_size: int = 512) -> dict[str, Any]:
    """A facenet-pytorch state_dict (numpy or torch tensors) -> params and batch_stats."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()
              if not k.endswith("num_batches_tracked") and not k.startswith("logits.")}  # fmt: skip
    out: dict[str, Any] = {}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in arrays:
            raise ValueError(f"state_dict: missing {key!r}; is this an InceptionResnetV1 file?")
        used.add(key)
        return arrays[key]

    def batch_norm(prefix: str, ours: str) -> None:
        var = _fold_gamma(take(f"{prefix}.running_var"), take(f"{prefix}.weight"), prefix)
        _tree.set_in(out, ("params", ours, "bias"), take(f"{prefix}.bias"))
        _tree.set_in(out, ("batch_stats", ours, "mean"), take(f"{prefix}.running_mean"))
        _tree.set_in(out, ("batch_stats", ours, "var"), var)

    for prefix, ours in layer_names().items():
        if ours.endswith("_up"):
            kernel = take(f"{prefix}.weight").transpose(2, 3, 1, 0)
            _tree.set_in(out, ("params", ours, "kernel"), kernel)
            _tree.set_in(out, ("params", ours, "bias"), take(f"{prefix}.bias"))
            continue
        kernel = take(f"{prefix}.conv.weight").transpose(2, 3, 1, 0)
        if ours == "conv1a":
            kernel = kernel * PIXEL_SCALE_FIX
        _tree.set_in(out, ("params", ours, "kernel"), kernel)
        batch_norm(f"{prefix}.bn", f"{ours}_bn")
    _tree.set_in(out, ("params", "bottleneck", "kernel"), take("last_linear.weight").T)
    batch_norm("last_bn", "bottleneck_bn")
    unused = sorted(arrays.keys() - used)
    if unused:
        raise ValueError(f"state_dict: keys with no place in inception_resnet_v1: {unused[:10]}")
    template = _tree.backbone_variables("inception_resnet_v1", 80, embedding_size=embedding_size)
    _tree.check_complete(out, template, "state_dict")
    return out


def load_state_dict(path: str | Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError as e:
        raise ImportError("reading a facenet-pytorch .pt file needs torch") from e
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return {k: v.numpy() for k, v in state.items()}


def convert(path: str | Path) -> dict[str, Any]:
    """facenet-pytorch .pt state_dict file -> {"params": ..., "batch_stats": ...}."""
    state = load_state_dict(path)
    size = state["last_linear.weight"].shape[0] if "last_linear.weight" in state else 512
    return convert_state_dict(state, embedding_size=size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agr_jax.convert facenet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--weights", required=True, help="facenet-pytorch .pt state_dict")
    parser.add_argument("--out", required=True, help="output Orbax directory")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = _tree.save(convert(args.weights), args.out)
    print(f"wrote {out} (config.init.checkpoint={out}; model.embedding_size=512)")
    return 0
