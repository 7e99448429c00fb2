"""YuNet's ONNX file (libfacedetection.train `yunet_n_dynamic.onnx`) -> agr_jax's flat npz.

`python -m agr_jax.convert yunet --onnx yunet_n_dynamic.onnx --out DIR` writes DIR/yunet.npz
for `agr_jax.inference.yunet` (the packaged copy: --out agr_jax/inference/weights). The `onnx`
package reads the file; nothing runs it.

Names: the export kept PyTorch's names for the 1x1 convolutions
(`neck.lateral_convs.2.conv1.weight`) but numbered the depthwise ones it folded BatchNorm into
(`495`). Walking the Conv nodes in graph order, a numbered one is named after the named 1x1
conv that feeds it (`X.conv1` -> `X.conv2`, the DP unit's second conv), and the one fed by the
graph input is the stem conv `backbone.model0.conv1`. Dots become Flax's path separators,
list indices join their list's name (`lateral_convs.2` -> `lateral_convs_2`), and OIHW
kernels become HWIO.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

STEM = "backbone.model0.conv1"


def conv_names(path: Path) -> dict[str, np.ndarray]:
    """{"neck.lateral_convs.2.conv2.weight": OIHW array, ...}: every Conv's weight and bias."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    produced_by: dict[str, str] = {}  # conv output -> that conv's module name
    out = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        weight = node.input[1]
        if weight.endswith(".weight"):
            name = weight.removesuffix(".weight")
        elif node.input[0] in graph_inputs:
            name = STEM
        elif produced_by.get(node.input[0], "").endswith(".conv1"):
            name = produced_by[node.input[0]].removesuffix(".conv1") + ".conv2"
        else:
            raise ValueError(f"{path}: cannot name Conv {node.name or node.output[0]} "
                             f"(weight {weight!r}, fed by {node.input[0]!r})")
        produced_by[node.output[0]] = name
        out[f"{name}.weight"] = inits[weight]
        if len(node.input) > 2:
            out[f"{name}.bias"] = inits[node.input[2]]
    if not out:
        raise ValueError(f"{path}: no Conv nodes; is this a YuNet ONNX file?")
    return out


def flax_key(name: str) -> str:
    """`bbox_head.multi_level_share_convs.0.0.conv1.weight` ->
    `bbox_head/multi_level_share_convs_0_0/conv1/kernel`."""
    parts: list[str] = []
    for part in name.split("."):
        if part.isdigit() and parts:
            parts[-1] += f"_{part}"
        else:
            parts.append(part)
    leaf = {"weight": "kernel", "bias": "bias"}[parts.pop()]
    return "/".join([*parts, leaf])


def to_flax(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flat Flax keys, OIHW -> HWIO (a depthwise (C, 1, 3, 3) becomes (3, 3, 1, C))."""
    flat = {flax_key(k): (v.transpose(2, 3, 1, 0) if v.ndim == 4 else v)
            for k, v in state.items()}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flat.items()}


def check_against_model(arrays: dict[str, np.ndarray], source: str) -> None:
    """Every parameter of agr_jax.inference.yunet.YuNet filled, with its shape."""
    import jax
    import jax.numpy as jnp
    from flax import traverse_util

    from agr_jax.inference.yunet import YuNet

    template = jax.eval_shape(lambda: YuNet(conv_impl="xla").init(
        jax.random.key(0), jnp.zeros((1, 64, 64, 3))))["params"]
    want = {k: v.shape for k, v in traverse_util.flatten_dict(template, sep="/").items()}
    problems = [f"  {k}: not in {source}" for k in sorted(want.keys() - arrays.keys())]
    problems += [f"  {k}: in {source} but not in the model" for k in
                 sorted(arrays.keys() - want.keys())]
    problems += [f"  {k}: {source} gives {arrays[k].shape}, the model expects {want[k]}"
                 for k in sorted(want.keys() & arrays.keys()) if arrays[k].shape != want[k]]
    if problems:
        raise ValueError(f"{source} does not fit agr_jax's YuNet:\n" + "\n".join(problems[:25]))


def convert(onnx_path: Path, out_dir: Path) -> dict[str, np.ndarray]:
    if not onnx_path.is_file():
        raise FileNotFoundError(f"--onnx {onnx_path}: no such file")
    arrays = to_flax(conv_names(onnx_path))
    check_against_model(arrays, str(onnx_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "yunet.npz", **arrays)
    return arrays


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agr_jax.convert yunet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, required=True,
                        help="yunet_n_dynamic.onnx from libfacedetection.train's onnx/ folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for yunet.npz")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    arrays = convert(args.onnx, args.out)
    count = sum(v.size for v in arrays.values())
    print(f"wrote {args.out / 'yunet.npz'}: {len(arrays)} arrays, {count:,} parameters")
    return 0
