"""`Predictor`: images in, one flat record per face out.

All faces of all images of a call go through the model together, in chunks padded to a
fixed bucket size, so the jitted forward compiles once per bucket and never per image.
Calibration (temperatures, age interval) is applied on the host from the bundle.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agr_jax import evaluation, tasks
from agr_jax.inference import calibrate, images, precision
from agr_jax.inference.bundle import Bundle
from agr_jax.inference.faces import Detector, Face

BUCKETS = (1, 4, 8, 16, 32, 128)  # batch sizes the forward is compiled for; larger calls chunk
AHEAD = 2  # chunks of a long call decoded ahead of the forward
DETECTORS = ("yunet", "mtcnn", "haar", "none")
DEFAULT_DETECTOR = "yunet"  # docs/detection.md: more faces than MTCNN, fewer false ones, faster
# Detectors run on a working copy of a photo: its long side is WORK_SIDE (a 4000x3000 phone
# photo at 960x720; smaller photos as they are), or more when `min_face` asks for faces that
# small (the copy then scaled so they span the detector's own minimum, YuNet's 40 px), up to
# the detector's largest canvas (WORK_MAX_SIDE for detectors without canvases). Not less than
# 960: YuNet's scores sink under its 0.9 threshold on ~50 px faces at 640 (if_t1.jpg of
# ../shared/photos loses 2 of its 6 faces there, none at 960).
WORK_SIDE, WORK_MAX_SIDE = 960, 1280
VIEWS = (1, 2)  # 1: the face; 2: the face and its mirror, averaged
RECORD_FIELDS = ("path", "face", "box", "score", "landmarks", "age", "age_interval", "gender",
                 "gender_prob", "race", "race_prob", "abstained", "reason", "note")


CALL_COST = 4  # one more forward call costs about this many padded crops (dispatch, fetch)


def plan_batches(n: int, buckets: Sequence[int] = BUCKETS) -> list[int]:
    """Bucket sizes, largest first, covering `n` crops with the least padded work (plus
    CALL_COST per call): 24 crops run as 16 + 8 rather than 32, 109 as 32 x 3 + 16."""
    buckets = tuple(sorted(buckets))
    plan = [buckets[-1]] * (n // buckets[-1])
    if n % buckets[-1]:
        plan += sorted(_cover(n % buckets[-1], buckets), reverse=True)
    return plan


@functools.lru_cache(maxsize=4096)
def _cover(n: int, buckets: tuple[int, ...]) -> tuple[int, ...]:
    """The cheapest multiset of buckets summing to >= n (ties: fewer calls)."""
    best: tuple[int, ...] = ()
    for b in buckets:
        option = (b,) if b >= n else (b, *_cover(n - b, buckets))
        key = (sum(option) + CALL_COST * len(option), len(option))
        if not best or key < (sum(best) + CALL_COST * len(best), len(best)):
            best = option
    return best


def empty_record(path: str, **fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(RECORD_FIELDS), "path": path, "abstained": False,
            "reason": None, "note": None, **fields}


class Predictor:
    """Calibrated age, gender and race for every face of the images it is given."""

    def __init__(self, bundle: Bundle, *, views: int = 1, min_score: float = 0.0,
                 min_face: int = 0, detector: Detector | None = None,
                 buckets: Sequence[int] = BUCKETS,
                 compiler_options: dict[str, Any] | None = None,
                 decode_threads: int | None = None, compute_dtype: str | None = None):
        if views not in VIEWS:
            raise ValueError(f"views: expected one of {VIEWS}, got {views!r}")
        fitted = (bundle.calibration or {}).get("views", views)
        if fitted != views:
            logging.warning("the calibration was fitted with %d view(s), this predictor "
                            "averages %d: intervals and probabilities may be off", fitted, views)
        self.bundle, self.views = bundle, views
        # None: the release's own compute dtype, float32 where this host lacks native bfloat16
        self.compute_dtype = (precision.check(compute_dtype) if compute_dtype is not None
                              else precision.choose(bundle.compute_dtype,
                                                    jax.default_backend()))
        # min_face (px): the smallest face to find (the working copy is made for it) and to
        # predict (smaller ones abstain); 0: every face the WORK_SIDE copy gives
        self.min_score = float(min_score)
        self.min_face = int(min_face or 0)
        self.buckets = tuple(sorted(buckets))
        self.traces = 0  # how often the forward was traced (one per bucket size used)
        # per detector: the smallest face side (photo px) it could find, lowest and highest
        # over the photos detected so far (run summaries report it)
        self.reach: dict[str, tuple[float, float]] = {}
        # threads that decode a call's images (None: one per CPU core, at most 16)
        self.decode_threads = (min(16, os.cpu_count() or 1) if decode_threads is None
                               else max(1, int(decode_threads)))
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # decodes
        self._cut_pool: concurrent.futures.ThreadPoolExecutor | None = None  # crops
        self._detectors: dict[str, Detector] = {}
        if detector is not None:
            self._detectors[detector.name] = detector
        self._variables = jax.device_put(bundle.variables)
        # `compiler_options` go to jax.jit (tests pass cheap-compile XLA options).
        self._forward = jax.jit(self._make_forward(), compiler_options=compiler_options)

    @classmethod
    def from_workdir(cls, workdir: str | Path, which: str | None = None,
                     calibrate: bool = True, **kwargs: Any) -> Predictor:
        """A run's checkpoint; `calibrate`: fit the temperatures and the age interval on the
        run's validation split first, with this predictor's views (as a release does)."""
        from agr_jax.inference.load import load_workdir, validation_split

        predictor = cls(load_workdir(workdir, which), **kwargs)
        if calibrate:
            predictor.fit_calibration(validation_split(workdir))
        return predictor

    @classmethod
    def from_release(cls, folder: str | Path, **kwargs: Any) -> Predictor:
        from agr_jax.inference.release import read_release

        return cls(read_release(folder), **kwargs)

    @classmethod
    def default(cls, model: str = "default", **kwargs: Any) -> Predictor:
        """A model released with the package: `model` "default" (`agr_jax/released`) or
        "fast" (`agr_jax/released_fast`), see `release.RELEASES`."""
        from agr_jax.inference.release import read_released

        return cls(read_released(model), **kwargs)

    # --- the model --------------------------------------------------------------------
    def _make_forward(self):
        model, spec = self.bundle.build_model(self.compute_dtype), self.bundle.task_spec

        def step(variables, batch):
            outputs, _ = model.apply(variables, batch["image"], train=False)
            preds = tasks.predictions(outputs, spec)
            return {"age_pred": preds["age"], "gender_prob": preds["gender_prob"],
                    "race_prob": preds["race_prob"], "gender_pred": preds["gender"],
                    "race_pred": preds["race"]}

        if self.views == 2:
            step = evaluation.tta(step, evaluation.tta_views(flip=True))

        def forward(variables, crops):
            self.traces += 1  # a Python side effect: runs when jax traces, not per call
            return step(variables, {"image": crops})

        return forward

    def fit_calibration(self, source: Any) -> dict[str, Any]:
        """Fits the calibration on a labelled split (records with JPEG `image`, `age`,
        `gender`, `race`), predicted with this predictor's views; sets and returns it."""
        self.bundle.calibration = {**calibrate.fit(self.predict_labelled(source)),
                                   "views": self.views}
        return self.bundle.calibration

    def predict_labelled(self, source: Any) -> dict[str, np.ndarray]:
        """The raw `age_pred`, `gender_prob`, `race_prob` of every record of a labelled
        split, with its `age`, `gender`, `race` (what calibration and evaluation read)."""
        size, chunk = self.bundle.image_size, self.buckets[-1]
        parts: dict[str, list] = {k: [] for k in ("age_pred", "gender_prob", "race_prob",
                                                  "age", "gender", "race")}
        for start in range(0, len(source), chunk):
            rows = [source[i] for i in range(start, min(start + chunk, len(source)))]
            raw = self.predict_crops(np.stack([images.crop(r["image"], size).image
                                               for r in rows]), raw=True)
            for k in ("age_pred", "gender_prob", "race_prob"):
                parts[k].append(raw[k])
            for k in ("age", "gender", "race"):
                parts[k].append(np.asarray([r[k] for r in rows]))
        return {k: np.concatenate(v) for k, v in parts.items()}

    def predict_crops(self, crops: np.ndarray, raw: bool = False) -> dict[str, np.ndarray]:
        """[N, S, S, 3] uint8 aligned crops -> calibrated age, interval and probabilities
        (`raw`: the model's own `age_pred`, `gender_prob`, `race_prob`)."""
        n = len(crops)
        parts, start = [], 0
        for size in plan_batches(n, self.buckets):
            chunk = crops[start:start + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]),
                                                        np.uint8)])
            parts.append((self._forward(self._variables, jnp.asarray(chunk)), min(size, n - start)))
            start += size
        fetched = jax.device_get(parts)
        out = {k: np.concatenate([p[k][:m] for p, m in fetched]) if n else np.zeros((0,))
               for k in ("age_pred", "gender_prob", "race_prob")}
        return out if raw else self.calibrated(out)

    def calibrated(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cal = self.bundle.calibration
        age = np.asarray(out["age_pred"], np.float64)
        if not cal or not len(age):
            return {"age": age, "age_interval": np.full((len(age), 2), np.nan),
                    "gender_prob": out["gender_prob"], "race_prob": out["race_prob"]}
        return {
            "age": age,
            "age_interval": calibrate.age_interval(age, cal["age_interval"],
                                                   self.bundle.task_spec.max_age),
            "gender_prob": calibrate.scaled_probs(out["gender_prob"], cal["gender_temperature"]),
            "race_prob": calibrate.scaled_probs(out["race_prob"], cal["race_temperature"]),
        }

    # --- images -> records ------------------------------------------------------------
    def detector(self, name: str) -> Detector:
        if name not in self._detectors:
            try:
                from agr_jax.inference import detect
            except ImportError as e:
                raise ImportError(f"detect={name!r}: the face detector module is not available "
                                  f"({e}); pass detect='none' for aligned crops") from e
            self._detectors[name] = detect.build_detector(name)
        return self._detectors[name]

    def bound(self, detect: str) -> images.Bound:
        """The working copy `detect` runs on: scaled so a `min_face` face spans the
        detector's minimum, filling its canvas, within WORK_SIDE and its largest one."""
        min_px, sides = self.detector_limits(detect)
        scale = min(1.0, min_px / self.min_face) if self.min_face > 0 else 0.0
        return images.Bound(scale, max(sides) if sides else WORK_MAX_SIDE, WORK_SIDE,
                            sides)

    def detector_limits(self, detect: str) -> tuple[float, tuple[int, ...]]:
        """(smallest face side the detector finds, in px of its input; its canvases' long
        sides, empty for a detector without canvases)."""
        det = self.detector(detect)
        canvases = getattr(det, "canvases", ())
        sides = tuple(sorted({max(c) for c in canvases}))
        if getattr(det, "max_side", None):
            sides = tuple(s for s in sides if s <= det.max_side) or (det.max_side,)
        if detect == "yunet":
            from agr_jax.inference.yunet import MIN_FACE_PX

            return float(MIN_FACE_PX), sides
        size = getattr(det, "min_face_size", None) or getattr(det, "min_size", (20,))[0]
        return float(size), sides

    def describe_finding(self, detect: str) -> str:
        """What the calls so far could find, for a run's summary, e.g. "found from 40-167
        px by photo size (yunet needs 40 px in its working copy, long side 960-1280 px;
        --min_face PX finds smaller ones, at more cost)"."""
        if detect == "none":
            return "inputs taken as aligned face crops"
        min_px, _ = self.detector_limits(detect)
        parts = [f"faces from {self.min_face} px asked"] if self.min_face else []
        if detect in self.reach:
            lo, hi = self.reach[detect]
            parts.append(f"found from {lo:.0f} px" if round(lo) == round(hi)
                         else f"found from {lo:.0f}-{hi:.0f} px by photo size")
        text = ", ".join(parts or ["faces"]) + (
            f" ({detect} needs {min_px:.0f} px in its working copy, long side "
            f"{WORK_SIDE}-{self.bound(detect).max_side} px")
        if self.min_face:
            return text + "; smaller faces abstain)"
        return text + "; --min_face PX finds smaller ones, at more cost)"

    def load(self, item: Any, index: int = 0,
             detect: str = DEFAULT_DETECTOR) -> images.Loaded:
        """One input read for `detect` (an aligned crop for "none", else a photo with the
        detector's working copy); raises `images.BadInput` with the reason."""
        if detect == "none":
            return images.crop(item, self.bundle.image_size, index)
        return images.load(item, index, self.bound(detect))

    def __call__(self, inputs: Any, detect: str = DEFAULT_DETECTOR) -> list[dict[str, Any]]:
        """One record per face (or per failed input / face-less photo), in input order.

        `inputs`: a path, bytes, a PIL image, a numpy (H, W, 3) uint8 array, or a list of
        them. `detect="none"`: each input is an aligned crop (UTKFace-style)."""
        if detect not in DETECTORS:
            raise ValueError(f"detect: expected one of {DETECTORS}, got {detect!r}")
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        size = self.bundle.image_size
        bound = None if detect == "none" else self.bound(detect)  # builds the detector once

        def load_one(i: int) -> images.Loaded | str:
            try:
                return (images.crop(items[i], size, i) if bound is None
                        else images.load(items[i], i, bound))
            except images.BadInput as e:
                return f"{images.name_of(items[i], i)}\0{e}"

        chunk = self.buckets[-1]
        if len(items) > chunk:
            return self._pipelined(load_one, len(items), chunk, detect)
        # JPEG decoding and PIL resizing release the GIL: on a many-core accelerator host
        # one Python thread would otherwise bound the device at a few thousand crops/s.
        if self.decode_threads > 1 and len(items) >= 2 * self.decode_threads:
            loaded = list(self._decode_pool().map(load_one, range(len(items))))
        else:
            loaded = [load_one(i) for i in range(len(items))]
        return self.predict_loaded(loaded, detect)

    def _pipelined(self, load_one: Any, n: int, chunk: int, detect: str) -> list[dict[str, Any]]:
        """A call longer than the largest bucket, a chunk at a time: the pool decodes the
        next chunk while this thread runs the current one's forward (on 2 cores the fast
        release went from ~2,200 to ~2,500-2,700 crops/s), at most `AHEAD` chunks ahead so
        a long call does not hold every decoded image."""
        pool = self._decode_pool()
        piece = -(-chunk // self.decode_threads)  # each thread decodes a share of a chunk

        def load_range(start: int, stop: int) -> list:
            return [load_one(i) for i in range(start, stop)]

        def submit(start: int) -> list:
            stop = min(start + chunk, n)
            return [pool.submit(load_range, a, min(a + piece, stop))
                    for a in range(start, stop, piece)]

        starts = iter(range(0, n, chunk))
        pending = collections.deque(submit(start) for start in itertools.islice(starts, AHEAD))
        records: list[dict[str, Any]] = []
        while pending:
            parts = pending.popleft()
            following = next(starts, None)
            if following is not None:
                pending.append(submit(following))
            records += self.predict_loaded([x for f in parts for x in f.result()], detect)
        return records

    def _decode_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.decode_threads,
                                                               "agr-decode")
        return self._pool

    def predict_loaded(self, loaded: Sequence[images.Loaded | str],
                       detect: str) -> list[dict[str, Any]]:
        """Records for already-loaded images; a str entry is "name\\0error reason"."""
        ok = [x for x in loaded if isinstance(x, images.Loaded)]
        if detect == "none":
            found = [[Face(np.array([0, 0, *(x.source_size or x.size)], np.float32), 1.0,
                           None)] for x in ok]
        else:
            bound = self.bound(detect)
            found = self.detector(detect).detect([x.bounded(bound).work for x in ok]) \
                if ok else []
            found = [[to_full(f, *x.work_scale()) for f in faces]
                     for x, faces in zip(ok, found, strict=True)]
            min_px = self.detector_limits(detect)[0]
            for x in ok:
                side = min_px * max(x.work_scale())
                lo, hi = self.reach.get(detect, (side, side))
                self.reach[detect] = (min(lo, side), max(hi, side))
        plan, crops = [], []  # per image: (face, crop index or abstain reason), or an error
        for rows, cut in self._cut_all(ok, found, detect):
            if isinstance(rows, list):
                rows = [(face, len(crops) + where if isinstance(where, int) else where)
                        for face, where in rows]
                crops += cut
            plan.append(rows)
        size = self.bundle.image_size
        preds = self.predict_crops(np.stack(crops) if crops
                                   else np.zeros((0, size, size, 3), np.uint8))
        records, it = [], iter(zip(ok, plan, strict=True))
        for entry in loaded:
            if isinstance(entry, str):
                name, reason = entry.split("\0", 1)
                records.append(empty_record(name, reason=f"error: {reason}"))
                continue
            x, rows = next(it)
            if isinstance(rows, str):
                records.append(empty_record(x.name, reason=rows))
                continue
            if not rows:
                records.append(empty_record(x.name, reason="no face found", note=x.note or None))
            for k, (face, where) in enumerate(rows):
                records.append(self.record(x, k, face, where, preds))
        return records

    def _cut_all(self, ok: list[images.Loaded], found: list[list[Face]],
                 detect: str) -> list[tuple[list | str, list[np.ndarray]]]:
        """`_cut` of every image; photos in the cut pool's threads (the crop-source decode
        and PIL's warps release the GIL: on 2 cores a 1920x1440 photo's 15 alignments and
        decode are the part of a call besides the detector and the model), one image per
        thread at a time, so a folder of phone photos holds at most that many decodes."""
        def cut(item: tuple[images.Loaded, list[Face]]) -> tuple[list | str, list]:
            crops: list[np.ndarray] = []
            try:
                return self._cut(*item, detect, crops), crops
            except images.BadInput as e:  # the full-resolution decode failed
                return f"error: {e}", []

        items = list(zip(ok, found, strict=True))
        if detect == "none" or len(items) < 2:
            return [cut(item) for item in items]
        if self._cut_pool is None:
            self._cut_pool = concurrent.futures.ThreadPoolExecutor(self.decode_threads,
                                                                   "agr-cut")
        return list(self._cut_pool.map(cut, items))

    def _cut(self, x: images.Loaded, faces: list[Face], detect: str,
             crops: list[np.ndarray]) -> list[tuple[Face, int | str]]:
        """Appends the crops of `x`'s faces that pass the quality checks (cut from the full
        resolution) to `crops`; returns (face, crop index or abstain reason) per face."""
        rows: list[tuple[Face, int | str]] = []
        size = self.bundle.image_size
        problems = [self.quality_problem(face) for face in faces]
        kept = [face for face, problem in zip(faces, problems, strict=True) if problem is None]
        if detect != "none" and kept:
            pixels, frame = crop_source(x, kept, size)
        for face, reason in zip(faces, problems, strict=True):
            if reason is None:
                crops.append(x.image if detect == "none"
                             else face_crop(pixels, face, size, frame))
                rows.append((face, len(crops) - 1))
            else:
                rows.append((face, reason))
        x.release()  # a lazily decoded full resolution is not held for the rest of the call
        return rows

    def quality_problem(self, face: Face) -> str | None:
        if face.score < self.min_score:
            return f"detection score {face.score:.2f} below min_score {self.min_score:.2f}"
        side = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
        if side < self.min_face:
            return f"face {side:.0f} px, below min_face {self.min_face} px"
        return None

    def record(self, x: images.Loaded, k: int, face: Face, where: int | str,
               preds: dict[str, np.ndarray]) -> dict[str, Any]:
        rec = empty_record(
            x.name, face=k, box=[round(float(v), 1) for v in face.box],
            score=round(float(face.score), 4), note=x.note or None,
            landmarks=None if face.landmarks is None
            else np.round(np.asarray(face.landmarks, np.float64), 1).tolist())
        if isinstance(where, str):
            return {**rec, "abstained": True, "reason": where}
        b = self.bundle
        gp, rp = preds["gender_prob"][where], preds["race_prob"][where]
        lo, hi = preds["age_interval"][where]
        return {**rec, "age": round(float(preds["age"][where]), 1),
                "age_interval": None if np.isnan(lo) else [round(float(lo), 1),
                                                           round(float(hi), 1)],
                "gender": b.gender_names[int(np.argmax(gp))],
                "gender_prob": {n: round(float(p), 4) for n, p in zip(b.gender_names, gp,
                                                                       strict=True)},
                "race": b.race_names[int(np.argmax(rp))],
                "race_prob": {n: round(float(p), 4) for n, p in zip(b.race_names, rp,
                                                                     strict=True)}}


def to_full(face: Face, sx: float, sy: float) -> Face:
    """A face found in a working copy, in full-resolution pixels (`sx`, `sy`: full pixels
    per working pixel; pixel centres map onto pixel centres)."""
    if sx == 1 and sy == 1:
        return face
    scale = np.array([sx, sy], np.float32)
    box = ((face.box.reshape(2, 2) + 0.5) * scale - 0.5).reshape(4)
    marks = None if face.landmarks is None else (np.asarray(face.landmarks) + 0.5) * scale - 0.5
    return Face(box.astype(np.float32), face.score,
                None if marks is None else marks.astype(np.float32))


def crop_source(x: images.Loaded, faces: Sequence[Face],
                size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels `x`'s face crops are cut from (`Loaded.crop_source`), as small as these
    faces allow, and the map from the photo's upright pixels onto them."""
    from agr_jax.inference import align

    return x.crop_source(align.reduction([face_matrix(f, size) for f in faces]))


def face_matrix(face: Face, size: int) -> np.ndarray:
    """The 2x3 map from photo pixels onto `face`'s crop (landmarks when given, else box)."""
    from agr_jax.inference import align

    if face.landmarks is not None:
        return align.landmark_matrix(np.asarray(face.landmarks), size)
    return align.box_matrix(np.asarray(face.box), size)


def face_crop(image: np.ndarray, face: Face, size: int,
              frame: np.ndarray | None = None) -> np.ndarray:
    """The face framed as the training crops are: aligned from landmarks when the detector
    gives them, else the box. `frame`: the map from the photo's upright pixels onto
    `image` when those are not the same (`crop_source`)."""
    from agr_jax.inference import align  # provided beside the detector

    if face.landmarks is not None:
        return align.align_face(image, np.asarray(face.landmarks), size, frame)
    return align.crop_box(image, np.asarray(face.box), size, frame)
