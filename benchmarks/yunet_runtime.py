"""YuNetDetector's two runtimes side by side: ms per image, batch 1, end to end `detect`.

    nice -n 19 python benchmarks/yunet_runtime.py [--rounds 7] [--calls 3] [--layouts]

One photo (../shared/photos' first, resized; random pixels without it) at 480x640, 720x960
and 960x1280 (height x width). Both detectors are built and warmed up first (the jax one
compiles its canvases), then each round times `--calls` calls of every arm, alternating, so
all see the same load on a shared machine; prints per arm the median and each round's ms,
and the median of the rounds' jax / onnxruntime ratios.
`--layouts` adds the bare onnxruntime graph (`yunet_onnx.run` on the image padded to 32)
for its two input layouts: float NCHW BGR prepared by numpy per call (the detector's), and
uint8 NHWC RGB with the transpose and cast inside the graph.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from PIL import Image

from agr_jax.bench.alternate import alternate, paired_ratio, print_medians
from agr_jax.inference import yunet_onnx
from agr_jax.inference.yunet import YuNetDetector

SIZES = ((480, 640), (720, 960), (960, 1280))
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"


def _image(height: int, width: int) -> np.ndarray:
    """A real photo resized to height x width where ../shared/photos has one."""
    paths = sorted(PHOTOS.glob("*.jpg"))
    if not paths:
        return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    photo = Image.open(paths[0]).convert("RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(photo)


def _ms(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3, help="calls per arm and round")
    parser.add_argument("--layouts", action="store_true",
                        help="also time the bare ONNX graph's two input layouts")
    args = parser.parse_args()
    detectors = {rt: YuNetDetector(runtime=rt, max_batch=1) for rt in ("jax", "onnxruntime")}
    sessions = {}
    if args.layouts:
        params = detectors["onnxruntime"].params
        sessions = {layout: yunet_onnx.session(params, layout)
                    for layout in yunet_onnx.LAYOUTS}
    for height, width in SIZES:
        image = _image(height, width)
        arms = {rt: functools.partial(_ms, functools.partial(det.detect, [image]), args.calls)
                for rt, det in detectors.items()}
        if sessions:
            padded = np.zeros((-(-height // 32) * 32, -(-width // 32) * 32, 3), np.uint8)
            padded[:height, :width] = image
            for layout, sess in sessions.items():
                arms[f"graph {layout}"] = functools.partial(
                    _ms, functools.partial(yunet_onnx.run, sess, padded[None]), args.calls)
        for fn in arms.values():  # first calls: compiles, session builds
            fn()
        values = alternate(arms, args.rounds)
        print_medians(f"{height}x{width}, batch 1: ms per image", values, ".1f")
        ratio = paired_ratio(values["jax"], values["onnxruntime"])
        print(f"  jax / onnxruntime, median of the rounds' ratios: {ratio:.2f}")


if __name__ == "__main__":
    main()
