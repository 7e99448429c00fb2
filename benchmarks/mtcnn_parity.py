"""MTCNN parity sweep: agr_jax's detector against facenet-pytorch's on many real scenes.

    nice -n 10 python benchmarks/mtcnn_parity.py --data ../shared/utkface [--n 40] [--seed 0]

Half the scenes are single UTKFace crops padded by random margins into canvases of varied
sizes, half 640x480 scenes with 2-5 crops at 80-200 px (agr_jax.bench.detect.crop_scene).
Prints, over all scenes: faces per side, scenes whose face counts differ, and the max box and
landmark differences in px between matched faces. Needs torch and facenet-pytorch (see
benchmarks/facenet_reference.py); tests/test_mtcnn.py is the small version CI runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from agr_jax.bench.detect import crop_paths, crop_scene
from agr_jax.inference.detect import MTCNNDetector
from benchmarks.facenet_reference import load_reference_mtcnn, reference_detect


def make_scenes(paths: list[Path], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)

    def crop() -> np.ndarray:
        return np.asarray(Image.open(paths[rng.integers(len(paths))]).convert("RGB"))

    out = []
    for i in range(n):
        if i % 2 == 0:
            top, bottom, left, right = rng.integers(10, 200, 4)
            out.append(np.pad(crop(), ((top, bottom), (left, right), (0, 0))))
        else:
            out.append(crop_scene([crop() for _ in range(rng.integers(2, 6))], seed + i))
    return out


def compare(reference, ours: MTCNNDetector, image: np.ndarray):
    """(reference faces, our faces, max box diff, max landmark diff) over matched faces."""
    boxes, _, points = reference_detect(reference, image)
    faces = ours.detect([image])[0]
    box_diff = mark_diff = 0.0
    for box, point in zip(boxes, points, strict=True):
        if not faces:
            break
        face = min(faces, key=lambda f: np.abs(f.box - box).max())
        box_diff = max(box_diff, float(np.abs(face.box - box).max()))
        mark_diff = max(mark_diff, float(np.abs(face.landmarks - point).max()))
    return len(boxes), len(faces), box_diff, mark_diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = crop_paths(args.data) or parser.error(f"no UTKFace crops (*.jpg) in {args.data}")
    reference, stand_in = load_reference_mtcnn()
    ours = MTCNNDetector()
    rows = [compare(reference, ours, image) for image in make_scenes(paths, args.n, args.seed)]
    ref_faces, our_faces, box, mark = (np.array(c) for c in zip(*rows, strict=True))
    print(f"{args.n} scenes: faces reference {ref_faces.sum()}, ours {our_faces.sum()}; "
          f"scenes with different counts {int((ref_faces != our_faces).sum())}; "
          f"max |box diff| {box.max():.3g} px, max |landmark diff| {mark.max():.3g} px"
          f"{' (reference NMS: pure-torch stand-in)' if stand_in else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
