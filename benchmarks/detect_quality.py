"""Faces found and false detections per detector, as `Predictor` returns them to a user.

    python benchmarks/detect_quality.py [--photos ../shared/photos] [--utkface ../shared/utkface]
        [--detectors yunet,mtcnn,haar] [--out runs/detect_quality] [--min_face PX]

Two sets, nothing tuned to either:
- the real photos of `--photos` (truth.json: `faces` counted by eye, `extra_ok` small or
  partial faces a detector may also report): found = min(detections, faces), false =
  detections beyond faces + extra_ok (a count: the photos have no boxes);
- UTKFace composites (`agr_jax/bench/photos.composites`: 10 scenes 640x480 with 4 crops,
  4 scenes 1920x1440 with 15, on backgrounds cut from the real photos, seed 100, so not the
  speed section's scenes): each detection matched one-to-one to a pasted crop by IoU >= 0.3
  (a face box inside its crop square overlaps it by ~0.5-0.8), unmatched ones are false.

Every photo goes in as JPEG bytes (composites at quality 90) through `Predictor(...)(jpegs,
detect=NAME)` with its defaults (the bounded working copy, the full-resolution boxes), and
every face record counts, abstained ones too. `--out` gets one annotated JPEG per photo and
detector (composites: green matched, red false, blue a pasted crop not found; real photos:
yellow, the eye judges) and `quality.json`; the summary table goes to stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from agr_jax.bench import detect as scenes
from agr_jax.bench import photos as photo_sets

COMPOSITES = ((640, 480, 4, 10, (90, 150)), (1920, 1440, 15, 4, (100, 260)))
MIN_IOU = 0.3
SEED = 100


def face_boxes(records: list[dict[str, Any]]) -> np.ndarray:
    """The boxes of every face record of one photo (abstained faces included)."""
    return np.asarray([r["box"] for r in records if r.get("face") is not None],
                      np.float32).reshape(-1, 4)


def score_photo(found: np.ndarray, faces: int, extra_ok: int = 0) -> dict[str, int]:
    """Counts on a photo known by its face count alone."""
    n = len(found)
    return {"faces": faces, "extra_ok": extra_ok, "detections": n, "found": min(n, faces),
            "false": max(0, n - faces - extra_ok)}


def score_scene(found: np.ndarray, truth: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """Counts on a scene with known boxes, and each detection's matched crop (-1: false)."""
    matched = scenes.match(found, truth, MIN_IOU)
    return {"faces": len(truth), "detections": len(found), "found": int((matched >= 0).sum()),
            "false": int((matched < 0).sum())}, matched


def annotate(image: np.ndarray, found: np.ndarray, good: np.ndarray | None,
             missed: np.ndarray | None = None) -> Image.Image:
    """Detections green (matched) or red (false), yellow where only a count is known; known
    faces not found blue."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    width = max(2, image.shape[1] // 400)
    colours = {True: (0, 220, 0), False: (255, 0, 0), None: (255, 220, 0)}
    for k, box in enumerate(found):
        draw.rectangle(box.tolist(), width=width,
                       outline=colours[None if good is None else bool(good[k])])
    for box in [] if missed is None else missed:
        draw.rectangle(box.tolist(), outline=(40, 90, 255), width=width)
    return pil


def totals(rows: list[dict[str, int]]) -> dict[str, Any]:
    faces, found = sum(r["faces"] for r in rows), sum(r["found"] for r in rows)
    return {"photos": len(rows), "faces": faces, "found": found,
            "found_rate": found / faces if faces else None,
            "false": sum(r["false"] for r in rows)}


def run(predictor: Any, detector: str, photos: list[tuple[str, bytes, int, int]],
        composites: list[tuple[bytes, np.ndarray]], out: Path | None) -> dict[str, Any]:
    """One detector over both sets: per-photo rows and totals."""
    result: dict[str, Any] = {"photos": [], "composites": []}
    for name, data, faces, extra in photos:
        found = face_boxes(predictor([data], detect=detector))
        row = score_photo(found, faces, extra)
        result["photos"].append({"file": name, **row})
        if out:  # a count alone: which boxes are false is for the eye to say
            annotate(photo_sets.decode_upright(data), found, None).save(
                out / f"{detector}_{Path(name).stem}.jpg", quality=85)
    for k, (data, truth) in enumerate(composites):
        found = face_boxes(predictor([data], detect=detector))
        row, matched = score_scene(found, truth)
        result["composites"].append({"scene": k, **row})
        if out:
            missed = np.delete(truth, matched[matched >= 0], axis=0)
            annotate(photo_sets.decode_upright(data), found, matched >= 0, missed).save(
                out / f"{detector}_composite_{k:02d}.jpg", quality=85)
    result["totals"] = {"photos": totals(result["photos"]),
                        "composites": totals(result["composites"])}
    return result


def load_sets(photos_dir: Path, utkface_dir: Path) -> tuple[list, list]:
    truth = json.loads((photos_dir / "truth.json").read_text())["images"]
    photos = [(r["file"], (photos_dir / r["file"]).read_bytes(), int(r["faces"]),
               int(r.get("extra_ok", 0))) for r in truth]
    crop_files = scenes.crop_paths(utkface_dir)
    if not crop_files:
        raise SystemExit(f"error: {utkface_dir}: no UTKFace crops (*.jpg)")
    backgrounds = [np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(p[1])))
                              .convert("RGB")) for p in photos]
    composites = []
    for width, height, faces, n, sides in COMPOSITES:
        for image, boxes in photo_sets.composites(crop_files, backgrounds, n, width, height,
                                                  faces, sides, SEED):
            composites.append((photo_sets.jpeg(image), boxes))
    return photos, composites


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| detector | real photos: faces found | false | composites: faces found | false |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        p, c = r["totals"]["photos"], r["totals"]["composites"]
        lines.append(f"| {name} | {p['found']}/{p['faces']} ({p['found_rate']:.3f}) | "
                     f"{p['false']} | {c['found']}/{c['faces']} ({c['found_rate']:.3f}) | "
                     f"{c['false']} |")
    per = ["", "| photo | faces | " + " | ".join(f"{n} found / false" for n in results) + " |",
           "|---|---|" + "---|" * len(results)]
    first = next(iter(results.values()))["photos"]
    for k, row in enumerate(first):
        per.append(f"| {row['file']} | {row['faces']} | " + " | ".join(
            f"{r['photos'][k]['found']} / {r['photos'][k]['false']}"
            for r in results.values()) + " |")
    return "\n".join(lines + per)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/photos"))
    parser.add_argument("--utkface", type=Path, default=Path("../shared/utkface"))
    parser.add_argument("--detectors", default="yunet,mtcnn,haar")
    parser.add_argument("--out", type=Path, default=Path("runs/detect_quality"))
    parser.add_argument("--min_face", type=int, default=None,
                        help="Predictor's min_face (the working copy's bound; default its own)")
    args = parser.parse_args(argv)
    if not (args.photos / "truth.json").exists():
        raise SystemExit(f"error: {args.photos}/truth.json not found (../shared/photos)")
    from agr_jax.inference.predictor import Predictor

    photos, composites = load_sets(args.photos, args.utkface)
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.default(min_face=args.min_face)
    results = {}
    for name in args.detectors.split(","):
        try:
            results[name] = run(predictor, name, photos, composites, args.out)
        except ImportError as e:  # haar without OpenCV
            print(f"skipped {name}: {e}", file=sys.stderr)
    results = {"min_face": predictor.min_face, "detectors": results}
    (args.out / "quality.json").write_text(json.dumps(results, indent=1))
    print(f"Predictor min_face {predictor.min_face} px")
    print(table(results["detectors"]))
    print(f"(annotated photos and quality.json in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
