"""Does detection + alignment frame faces as the training crops are? (issue 27)

    python benchmarks/align_check.py --workdir runs/release_r18 [--split test]
        [--release agr_jax/released] [--detector yunet|mtcnn|haar] [--canvas 2.0] [--limit N]
    python benchmarks/align_check.py --release agr_jax/released --tfds_dir runs/utk_tfds

Each test-split crop is predicted twice: as given (`detect="none"`, the framing the model
was trained on) and padded into a canvas `--canvas` times its size (mid-grey border) and
run through the detector and the landmark alignment (`detect="mtcnn"`). Reports the share
of faces found, the agreement of the two (gender, race, age within 5 years, mean age
difference) beside the agreement of the crop with its own mirror image (how stable the model
is without any framing change), the accuracy of both on the labels, and the paired
differences with 95 % bootstrap intervals. Writes
`<workdir>/eval/align_check_<detector>_<split>.json`. The model is the run's checkpoint, or the
release folder given with --release (the split comes from --workdir's dataset, or from a
prepared build given with --tfds_dir; the report then goes to runs/align_check/).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from agr_jax.bench.predict import record_scores as scores

CHUNK = 64


def padded(jpeg: bytes, factor: float) -> np.ndarray:
    crop = Image.open(io.BytesIO(jpeg)).convert("RGB")
    side = int(round(max(crop.size) * factor))
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    canvas.paste(crop, ((side - crop.size[0]) // 2, (side - crop.size[1]) // 2))
    return np.asarray(canvas)


def central_face(records: list[dict], side: float) -> dict | None:
    """The detected face nearest the canvas centre (where the crop was pasted)."""
    faces = [r for r in records if r.get("age") is not None]
    if not faces:
        return None
    def distance(r):
        x0, y0, x1, y1 = r["box"]
        return abs((x0 + x1) / 2 - side / 2) + abs((y0 + y1) / 2 - side / 2)
    return min(faces, key=distance)


def agreement(a: list[dict], b: list[dict]) -> dict:
    return {
        "gender": float(np.mean([p["gender"] == d["gender"] for p, d in zip(a, b, strict=True)])),
        "race": float(np.mean([p["race"] == d["race"] for p, d in zip(a, b, strict=True)])),
        "age_within_5": float(np.mean([abs(p["age"] - d["age"]) <= 5
                                       for p, d in zip(a, b, strict=True)])),
        "age_mean_abs_diff": float(np.mean([abs(p["age"] - d["age"])
                                            for p, d in zip(a, b, strict=True)])),
    } if a else {}


def paired_differences(a: list[dict], b: list[dict], labels: dict[str, np.ndarray],
                       resamples: int = 2000, seed: int = 0) -> dict:
    """b minus a on the same faces: accuracy differences and the MAE difference, each with a
    95 % paired bootstrap interval (faces resampled together), so "do they agree" is read
    against the noise of a 1,852-face split, not against zero."""
    rng = np.random.default_rng(seed)
    per_face = {
        "gender_acc": [np.array([r["gender"] == g for r, g in zip(x, labels["gender_name"],
                                                                   strict=True)], float)
                       for x in (a, b)],
        "race_acc": [np.array([r["race"] == g for r, g in zip(x, labels["race_name"],
                                                               strict=True)], float)
                     for x in (a, b)],
        "age_mae": [np.abs(np.array([r["age"] for r in x]) - labels["age"]) for x in (a, b)],
    }
    known = labels["race"] >= 0
    per_face["race_acc"] = [v[known] for v in per_face["race_acc"]]
    out = {}
    for key, (first, second) in per_face.items():
        diff = second - first
        idx = rng.integers(0, len(diff), (resamples, len(diff)))
        lo, hi = np.percentile(diff[idx].mean(axis=1), [2.5, 97.5])
        out[key] = {"difference": float(diff.mean()), "ci95": [float(lo), float(hi)]}
    return out


def mirrored(jpeg: bytes) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))[:, ::-1])


def check(predictor, source, detector: str, factor: float, limit: int | None) -> dict:
    n = len(source) if limit is None else min(limit, len(source))
    plain, mirror, detected, missed = [], [], [], 0
    kept: list[int] = []
    detect_error = None
    for start in range(0, n, CHUNK):
        rows = [source[i] for i in range(start, min(start + CHUNK, n))]
        jpegs = [r["image"] for r in rows]
        plain += predictor(jpegs, detect="none")
        mirror += predictor([mirrored(j) for j in jpegs], detect="none")
        if detect_error is not None:
            continue
        try:
            canvases = [padded(j, factor) for j in jpegs]
            found = predictor(canvases, detect=detector)
        except ImportError as e:  # the detector module is not installed yet
            detect_error = f"detector {detector!r} not importable: {e}"
            continue
        by_image: dict[str, list] = {}
        for r in found:
            by_image.setdefault(r["path"], []).append(r)
        for k, canvas in enumerate(canvases):
            face = central_face(by_image.get(f"<array #{k}>", []), canvas.shape[0])
            if face is None:
                missed += 1
            else:
                detected.append(face)
                kept.append(start + k)
    labels = {k: np.asarray([float(source[i][k]) for i in range(n)]) for k in
              ("age", "gender", "race")}
    b = predictor.bundle
    out = {"faces": n, "canvas_factor": factor, "detector": detector,
           "none": scores(plain, labels, b.gender_names, b.race_names)}
    if detect_error is not None:
        out["detect_skipped"] = detect_error
        return out
    sub = {k: v[kept] for k, v in labels.items()}
    pairs = [(plain[i], d) for i, d in zip(kept, detected, strict=True)]
    out["found_share"] = len(detected) / n if n else float("nan")
    out["missed"] = missed
    out[detector] = scores(detected, sub, b.gender_names, b.race_names)
    out["none_on_found"] = scores([p for p, _ in pairs], sub, b.gender_names, b.race_names)
    found_plain = [p for p, _ in pairs]
    out["agreement"] = agreement(found_plain, detected)
    # The model's own stability: the same crops mirrored (no framing change at all).
    out["agreement_with_mirror"] = agreement([plain[i] for i in kept],
                                             [mirror[i] for i in kept])
    if pairs:
        named = {**sub, "gender_name": [b.gender_names[int(g)] for g in sub["gender"]],
                 "race_name": [b.race_names[int(r)] if r >= 0 else None for r in sub["race"]]}
        out["paired_difference"] = paired_differences(found_plain, detected, named)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--tfds_dir", default=None,
                        help="a prepared build (with --release, instead of --workdir)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--release", default=None)
    parser.add_argument("--detector", default="mtcnn", choices=["yunet", "mtcnn", "haar"])
    parser.add_argument("--canvas", type=float, default=2.0)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)

    from agr_jax import configuration
    from agr_jax.data import tfds_builders
    from agr_jax.inference.predictor import Predictor

    if (args.workdir is None) == (args.tfds_dir is None) or (args.tfds_dir and not args.release):
        parser.error("give --workdir, or --tfds_dir with --release")
    if args.workdir:
        workdir = Path(args.workdir)
        config = configuration.load(workdir)
        tfds_dir = (Path(config.data.tfds_dir) if config.data.get("tfds_dir")
                    else workdir / "tfds")
        report_dir = workdir / "eval"
    else:
        tfds_dir, report_dir = Path(args.tfds_dir), Path("runs/align_check")
    source = tfds_builders.load_split(tfds_dir, args.split)
    predictor = (Predictor.from_release(args.release) if args.release
                 else Predictor.from_workdir(workdir))
    out = check(predictor, source, args.detector, args.canvas, args.limit)
    out.update(model=args.release or str(workdir), split=f"{tfds_dir}:{args.split}")
    path = report_dir / f"align_check_{args.detector}_{args.split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
