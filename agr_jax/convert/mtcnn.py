"""facenet-pytorch's MTCNN weights (`data/{p,r,o}net.pt`) -> agr_jax's flat npz.

`python -m agr_jax.convert mtcnn [--src DIR_OR_WHEEL] [--out agr_jax/inference/weights/mtcnn.npz]`
--src: a folder holding pnet.pt/rnet.pt/onet.pt, or the facenet-pytorch wheel (`pip download
--no-deps facenet-pytorch==2.6.0`); default: the installed facenet_pytorch package's data/.
torch is needed here only; inference reads the npz.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np

from agr_jax.inference.mtcnn import NETS, WEIGHTS


def installed_data_dir() -> Path:
    """facenet_pytorch/data of the installed package, found without importing it (its import
    pulls in torchvision)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "facenet-pytorch is not installed: pass --src (a folder with {p,r,o}net.pt or the "
            "wheel from `pip download --no-deps facenet-pytorch==2.6.0`)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_state_dicts(src: Path) -> dict[str, dict[str, np.ndarray]]:
    """{"pnet": {"conv1.weight": array, ...}, ...} from a folder or a wheel."""
    import torch

    def load(raw: bytes) -> dict[str, np.ndarray]:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        return {k: v.numpy() for k, v in state.items()}

    if src.is_file() and src.suffix == ".whl":
        with zipfile.ZipFile(src) as wheel:
            return {n: load(wheel.read(f"facenet_pytorch/data/{n}.pt")) for n in NETS}
    if src.is_dir():
        return {n: load((src / f"{n}.pt").read_bytes()) for n in NETS}
    raise FileNotFoundError(f"--src {src}: neither a folder nor a .whl")


def to_flax(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torch names -> "layer/param" keys of agr_jax.inference.mtcnn (OIHW -> HWIO, (out, in)
    -> (in, out))."""
    flat = {}
    for key, value in state.items():
        layer, kind = key.rsplit(".", 1)
        if layer.startswith("prelu"):
            flat[f"{layer}/alpha"] = value
        elif kind == "bias":
            flat[f"{layer}/bias"] = value
        elif value.ndim == 4:
            flat[f"{layer}/kernel"] = value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            flat[f"{layer}/kernel"] = value.T
        else:
            raise ValueError(f"unexpected parameter {key} with shape {value.shape}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flat.items()}


def convert(src: Path, out: Path) -> dict[str, np.ndarray]:
    arrays = {f"{net}/{k}": v for net, state in read_state_dicts(src).items()
              for k, v in to_flax(state).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return arrays


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agr_jax.convert mtcnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    arrays = convert(args.src or installed_data_dir(), args.out)
    count = sum(v.size for v in arrays.values())
    print(f"wrote {args.out}: {len(arrays)} arrays, {count:,} parameters")
    return 0
