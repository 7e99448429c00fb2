"""What `python -m agr_jax.predict` does: expand the inputs, predict, write, annotate.

Images go to the predictor in chunks (one batched forward per chunk); videos frame by frame;
a camera streams until it ends. Every input gets at least one row; the exit status is 1 when
any input failed.
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agr_jax.inference import annotate, images, video
from agr_jax.inference.outputs import RecordWriter

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
CHUNK = 32  # images per predictor call
PROGRESS_FROM = 64  # show a progress bar from this many images


def expand(paths: Sequence[str]) -> tuple[list[str], list[str], int]:
    """(images, videos, files skipped in folders for an unknown suffix). A folder is walked
    recursively; a pattern with * ? [ is a glob; anything else is taken as given (a missing
    file then gets its error row)."""
    files: list[str] = []
    skipped = 0
    for p in paths:
        if any(c in p for c in "*?["):
            matches = sorted(glob.glob(p, recursive=True))
            files += [m for m in matches if Path(m).is_file()] or [p]
        elif Path(p).is_dir():
            for f in sorted(Path(p).rglob("*")):
                if f.is_file():
                    if f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                        files.append(str(f))
                    else:
                        skipped += 1
        else:
            files.append(p)
    vids = [f for f in files if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return [f for f in files if f not in set(vids)], vids, skipped


def _annotate_images(chunk: list[str], records: list[dict], copies: dict[str, Path]) -> None:
    by_path = collections.defaultdict(list)
    for r in records:
        by_path[r["path"]].append(r)
    for path in chunk:
        try:
            image = images.load(path).image
        except images.BadInput:
            continue
        annotate.save(image, by_path[path], copies[path])


def predict_images(predictor: Any, paths: list[str], detect: str, writer: RecordWriter,
                   copies: dict[str, Path] | None) -> collections.Counter:
    """`copies`: where each path's annotated copy goes (`annotate.copy_paths`), or None."""
    counts: collections.Counter = collections.Counter()
    bar = tqdm(total=len(paths), unit="img", disable=len(paths) < PROGRESS_FROM,
               file=sys.stderr)
    start = time.perf_counter()
    for i in range(0, len(paths), CHUNK):
        chunk = paths[i:i + CHUNK]
        records = predictor(chunk, detect=detect)
        for r in records:
            count(counts, r)
            writer.write(r)
        if copies is not None:
            _annotate_images(chunk, records, copies)
        bar.update(len(chunk))
        bar.set_postfix(faces_s=f"{counts['faces'] / (time.perf_counter() - start):.0f}")
    bar.close()
    return counts


def count(counts: collections.Counter, record: dict[str, Any]) -> None:
    reason = record.get("reason") or ""
    if record.get("kind") == "track":
        counts["tracks"] += 1
    elif reason.startswith("error:"):
        counts["errors"] += 1
    elif reason == "no face found":
        counts["no_face"] += 1
    else:
        counts["faces"] += 1
        counts["abstained"] += bool(record.get("abstained"))


def predict_videos(predictor: Any, sources: Iterable[str | int], detect: str, every: int,
                   writer: RecordWriter, copies: dict[str, Path] | None,
                   show: bool = False) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for source in sources:
        out = None
        if copies is not None and not isinstance(source, int):
            out = annotate.VideoWriter(copies[source], video.fps_of(source) / every)

        def on_frame(index, frame, rows, out=out):
            if out is not None or show:
                drawn = annotate.draw(frame, rows)
                if out is not None:
                    out.write(drawn)
                if show:
                    show_frame(drawn)

        try:
            for r in video.predict_video(predictor, source, detect, every, on_frame=on_frame):
                count(counts, r)
                writer.write(r)
        except ValueError as e:  # cannot open
            r = {"path": str(source), "reason": f"error: {e}"}
            count(counts, r)
            writer.write(r)
        finally:
            if out is not None:
                out.close()
    return counts


def display_available() -> bool:
    """A live window needs a display and an OpenCV built with GUI support (the headless
    wheel has none)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    cv2 = video.cv2_module()
    try:
        cv2.namedWindow("agr_jax")
        return True
    except cv2.error:
        return False


def show_frame(rgb: Any) -> None:
    cv2 = video.cv2_module()
    cv2.imshow("agr_jax", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if cv2.waitKey(1) & 0xFF == ord("q"):
        raise KeyboardInterrupt


def camera_source(value: str) -> str | int:
    """`--camera 0` is a device index; anything else a path or URL OpenCV opens (tests point
    it at a generated video file)."""
    return int(value) if value.isdigit() else value


def run(predictor: Any, paths: Sequence[str], *, detect: str, out: str | None = None,
        annotate_dir: str | None = None, every: int = 1, camera: str | None = None) -> int:
    """Predicts everything asked for; returns the exit status (1 when any input failed)."""
    image_paths, video_paths, skipped = expand(paths)
    copies = None
    if annotate_dir:  # the inputs' folder structure kept, so same-named files never collide
        Path(annotate_dir).mkdir(parents=True, exist_ok=True)
        copies = annotate.copy_paths(Path(annotate_dir), image_paths, video_paths)
    show = camera is not None and display_available()
    # Camera without a window: JSON lines on stdout (and --out when given).
    stream = sys.stdout if out is None or (camera is not None and not show) else None
    writer = RecordWriter(out, stream)
    echo = RecordWriter(None, sys.stdout) if out and camera is not None and not show else None
    try:
        counts = predict_images(predictor, image_paths, detect, writer, copies)
        counts += predict_videos(predictor, video_paths, detect, every, writer, copies)
        if camera is not None:
            target = _Tee(writer, echo) if echo else writer
            counts += predict_videos(predictor, [camera_source(camera)], detect, every,
                                     target, None, show=show)
    finally:
        writer.close()
    print(f"{len(image_paths)} images, {len(video_paths)} videos"
          f"{', camera' if camera is not None else ''}: {counts['faces']} faces "
          f"({counts['abstained']} abstained), {counts['no_face']} without a face, "
          f"{counts['tracks']} video tracks, {counts['errors']} failed inputs"
          f"{f', {skipped} folder files skipped (not an image or video suffix)' if skipped else ''}"
          f"{f'; wrote {out}' if out else ''}; {finding(predictor, detect)}", file=sys.stderr)
    return 1 if counts["errors"] else 0


def finding(predictor: Any, detect: str) -> str:
    """The smallest faces this run could find (`Predictor.describe_finding`)."""
    describe = getattr(predictor, "describe_finding", None)
    return describe(detect) if describe is not None else f"detector {detect}"


class _Tee:
    def __init__(self, *writers: RecordWriter):
        self.writers = writers

    def write(self, record: dict[str, Any]) -> None:
        for w in self.writers:
            w.write(record)
