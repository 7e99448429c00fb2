"""Video and camera: frames in, per-frame records plus one summary per tracked face.

Faces are tracked across frames by box overlap (greedy IoU matching); each track's ages and
class probabilities are averaged, so a face's labels stay stable over the video. OpenCV
(opencv-python-headless 4.x, the `video` extra) reads and writes the files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

MIN_IOU = 0.3


def cv2_module() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise ImportError("video and camera input need OpenCV: pip install "
                          "'agr_jax[video]' (opencv-python-headless 4.x)") from e
    return cv2


def frames(source: str | int, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 frame) for every `every`-th frame of a file or camera index."""
    if every < 1:
        raise ValueError(f"every: expected >= 1, got {every}")
    cv2 = cv2_module()
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise ValueError(f"{source}: cannot open as a video or camera")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def fps_of(path: str) -> float:
    cv2 = cv2_module()
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    capture.release()
    return float(fps)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclasses.dataclass
class Track:
    id: int
    box: np.ndarray
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class IouTracker:
    """Greedy IoU matching of each frame's faces to the tracks seen in the last frames.

    `max_gap` counts the frames the tracker is given (one `update` each), not the video's:
    with `--every 15` a track survives 10 sampled frames unseen, as with `--every 1`."""

    def __init__(self, min_iou: float = MIN_IOU, max_gap: int = 10):
        self.min_iou, self.max_gap = min_iou, max_gap
        self.tracks: list[Track] = []
        self._live: list[Track] = []  # tracks seen within max_gap updates
        self._last_seen: dict[int, int] = {}
        self._step = 0  # updates so far

    def update(self, frame: int, rows: list[dict[str, Any]]) -> None:
        """Sets `row["track"]` on each face row of `frame` (rows without a box are skipped)."""
        self._step += 1
        live = self._live = [t for t in self._live
                             if self._step - self._last_seen[t.id] <= self.max_gap]
        pairs = sorted(((iou(t.box, np.asarray(r["box"])), ti, ri)
                        for ti, t in enumerate(live) for ri, r in enumerate(rows)
                        if r.get("box") is not None), reverse=True)
        used_t, used_r = set(), set()
        for overlap, ti, ri in pairs:
            if overlap < self.min_iou or ti in used_t or ri in used_r:
                continue
            used_t.add(ti)
            used_r.add(ri)
            self._add(live[ti], frame, rows[ri])
        for ri, row in enumerate(rows):
            if ri not in used_r and row.get("box") is not None:
                track = Track(len(self.tracks), np.asarray(row["box"]))
                self.tracks.append(track)
                self._live.append(track)
                self._add(track, frame, row)

    def _add(self, track: Track, frame: int, row: dict[str, Any]) -> None:
        track.box = np.asarray(row["box"])
        track.rows.append(row)
        row["track"] = track.id
        self._last_seen[track.id] = self._step

    def summaries(self, path: str) -> list[dict[str, Any]]:
        return [summarize(path, t) for t in self.tracks]


def _mean_probs(rows: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    probs = [r[key] for r in rows if r.get(key)]
    if not probs:
        return None
    return {k: round(float(np.mean([p[k] for p in probs])), 4) for k in probs[0]}


def summarize(path: str, track: Track) -> dict[str, Any]:
    """One row per track: frame range, mean age and interval, mean class probabilities."""
    scored = [r for r in track.rows if r.get("age") is not None]
    gender, race = _mean_probs(scored, "gender_prob"), _mean_probs(scored, "race_prob")
    intervals = [r["age_interval"] for r in scored if r.get("age_interval")]
    frames_seen = [r["frame"] for r in track.rows]
    return {
        "path": path, "kind": "track", "track": track.id,
        "frames": [min(frames_seen), max(frames_seen)], "frame_count": len(frames_seen),
        "scored_frames": len(scored),
        "age": round(float(np.mean([r["age"] for r in scored])), 1) if scored else None,
        "age_interval": np.round(np.mean(intervals, 0), 1).tolist() if intervals else None,
        "gender": max(gender, key=gender.get) if gender else None, "gender_prob": gender,
        "race": max(race, key=race.get) if race else None, "race_prob": race,
        "abstained": not scored,
        "reason": None if scored else "every frame of this track abstained",
    }


def predict_video(predictor: Any, source: str | int, detect: str, every: int = 1,
                  batch_frames: int = 8, on_frame: Any = None) -> Iterator[dict[str, Any]]:
    """Per-frame face rows (with `frame` and `track`), then one summary row per track.

    Frames go to the predictor `batch_frames` at a time (one batched forward each);
    `on_frame(index, frame, rows)` sees each frame with its rows (annotation, display)."""
    from agr_jax.inference.images import Loaded

    name = str(source)
    tracker = IouTracker()
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> Iterator[dict[str, Any]]:
        loaded = [Loaded(f"{name}#frame={i}", f) for i, f in batch]
        records = predictor.predict_loaded(loaded, detect)
        by_frame: dict[str, list] = {}
        for r in records:
            by_frame.setdefault(r["path"], []).append(r)
        for i, f in batch:
            rows = by_frame.get(f"{name}#frame={i}", [])
            for r in rows:
                r.update(path=name, frame=i, kind="frame")
            tracker.update(i, [r for r in rows if r.get("face") is not None])
            if on_frame is not None:
                on_frame(i, f, rows)
            yield from rows
        batch.clear()

    for index, frame in frames(source, every):
        batch.append((index, frame))
        if len(batch) == batch_frames:
            yield from flush()
    if batch:
        yield from flush()
    yield from tracker.summaries(name)
