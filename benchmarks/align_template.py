"""Measure where MTCNN puts the 5 landmarks (and its box) in UTKFace's own crops.

    nice -n 10 python benchmarks/align_template.py [--data ../shared/utkface] [--n 2000]
        [--seed 0] [--pad 50] [--min_score 0.9]

Takes N crops (seeded sample), pads each into a black canvas (`--pad` px on every side, so the
detector sees the whole face), keeps crops where MTCNN finds exactly one face with score >=
min_score, normalises its landmarks to the crop ((pixel + 0.5) / side) and its box (x / side),
and prints the per-coordinate median (the template for agr_jax/inference/align.py) with the
inter-quartile range as its spread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from agr_jax.bench.detect import crop_paths
from agr_jax.inference.detect import MTCNNDetector
from agr_jax.inference.faces import LANDMARK_NAMES

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "utkface"


def measure(paths: list[Path], pad: int, min_score: float, batch: int = 8):
    """(landmarks (K, 5, 2), boxes (K, 4)) normalised to each crop, and counts of what was
    dropped: {"no_face", "several", "low_score"}."""
    detector = MTCNNDetector()
    marks, boxes = [], []
    dropped = {"no_face": 0, "several": 0, "low_score": 0}
    for start in range(0, len(paths), batch):
        if start % 200 == 0 and marks:  # progress, with the running template
            print(f"  {start}/{len(paths)} crops, kept {len(marks)}, median so far "
                  f"{np.round(np.median(marks, axis=0), 4).tolist()} box "
                  f"{np.round(np.median(boxes, axis=0), 4).tolist()}", file=sys.stderr, flush=True)
        crops = [np.asarray(Image.open(p).convert("RGB")) for p in paths[start:start + batch]]
        canvases = [np.pad(c, ((pad, pad), (pad, pad), (0, 0))) for c in crops]
        for crop, faces in zip(crops, detector.detect(canvases), strict=True):
            if not faces:
                dropped["no_face"] += 1
            elif len(faces) > 1:
                dropped["several"] += 1
            elif faces[0].score < min_score:
                dropped["low_score"] += 1
            else:
                h, w = crop.shape[:2]
                scale = np.array([w, h], np.float64)
                marks.append((faces[0].landmarks - pad + 0.5) / scale)
                boxes.append((faces[0].box - pad) / np.tile(scale, 2))
    return np.array(marks), np.array(boxes), dropped


def summary(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-coordinate median, 25th and 75th percentiles."""
    q25, median, q75 = np.percentile(values, [25, 50, 75], axis=0)
    return median, q25, q75


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pad", type=int, default=50)
    parser.add_argument("--min_score", type=float, default=0.9)
    args = parser.parse_args(argv)
    paths = crop_paths(args.data) or parser.error(f"no UTKFace crops (*.jpg) in {args.data}")
    rng = np.random.default_rng(args.seed)
    paths = [paths[i] for i in sorted(rng.choice(len(paths), min(args.n, len(paths)),
                                                 replace=False))]
    start = time.time()
    marks, boxes, dropped = measure(paths, args.pad, args.min_score)
    print(f"{len(paths)} crops from {args.data}: kept {len(marks)}, dropped {dropped} "
          f"({time.time() - start:.0f} s)")
    median, q25, q75 = summary(marks)
    print("landmark        median x  median y   IQR x          IQR y")
    for name, m, lo, hi in zip(LANDMARK_NAMES, median, q25, q75, strict=True):
        print(f"{name:<14} {m[0]:8.4f}  {m[1]:8.4f}   "
              f"{lo[0]:.4f}-{hi[0]:.4f}  {lo[1]:.4f}-{hi[1]:.4f}")
    bmed, bq25, bq75 = summary(boxes)
    print("box x0 y0 x1 y1 median", np.round(bmed, 4).tolist(),
          "IQR", np.round(bq25, 4).tolist(), "-", np.round(bq75, 4).tolist())
    print("TEMPLATE = np.array(" + repr(np.round(median, 4).tolist()) + ", np.float64)")
    print("BOX_TEMPLATE = np.array(" + repr(np.round(bmed, 4).tolist()) + ", np.float64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
