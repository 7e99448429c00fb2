"""Boxes and labels drawn on copies of the inputs (PIL for images, OpenCV for video)."""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

OK, ABSTAINED = (40, 220, 60), (240, 180, 0)


def label(record: dict[str, Any]) -> str:
    if record.get("abstained"):
        return "abstained"
    interval = record.get("age_interval")
    age = f"{record['age']:.0f}" + (f" [{interval[0]:.0f}-{interval[1]:.0f}]" if interval else "")
    return f"{age} {record['gender']} {record['race']}"


def draw(image: np.ndarray, records: list[dict[str, Any]]) -> np.ndarray:
    """A copy of the RGB `image` with each record's box, landmarks and label."""
    pil = Image.fromarray(image)
    pen = ImageDraw.Draw(pil)
    width = max(1, round(min(pil.size) / 200))
    for r in records:
        if r.get("box") is None:
            continue
        x0, y0, x1, y1 = r["box"]
        colour = ABSTAINED if r.get("abstained") else OK
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        for x, y in r.get("landmarks") or ():
            pen.ellipse((x - width, y - width, x + width, y + width), fill=colour)
        text = label(r)
        top = max(0, y0 - 12)
        pen.rectangle(pen.textbbox((x0, top), text), fill=(0, 0, 0))
        pen.text((x0, top), text, fill=colour)
    return np.asarray(pil)


def copy_paths(directory: Path, images: Sequence[str],
               videos: Sequence[str] = ()) -> dict[str, Path]:
    """Where each input's annotated copy goes: under `directory` at the input's place relative
    to the deepest folder holding every input, as `STEM.annotated.png` (videos `.mp4`), so
    photos/a/x.jpg and photos/b/x.jpg both keep a copy; where two inputs of one folder share
    a stem (x.jpg, x.png) their copies keep the whole name (`x.jpg.annotated.png`)."""
    kinds = {**{s: ".annotated.png" for s in images}, **{s: ".annotated.mp4" for s in videos}}
    if not kinds:
        return {}
    files = {s: Path(os.path.abspath(s)) for s in kinds}
    root = os.path.commonpath([f.parent for f in files.values()])
    out = {s: directory / f.parent.relative_to(root) / (f.stem + kinds[s])
           for s, f in files.items()}
    uses = collections.Counter(out.values())
    return {s: p if uses[p] == 1 else p.with_name(files[s].name + kinds[s])
            for s, p in out.items()}


def save(image: np.ndarray, records: list[dict[str, Any]], target: Path) -> None:
    """`draw` the records on `image` into `target` (its folders created)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(draw(image, records)).save(target)


class VideoWriter:
    """Annotated frames to an .mp4 (mp4v) beside the other outputs."""

    def __init__(self, path: Path, fps: float):
        from agr_jax.inference.video import cv2_module

        self.cv2, self.path, self.fps, self.writer = cv2_module(), path, fps, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame.shape[:2]
            fourcc = self.cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = self.cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
        self.writer.write(self.cv2.cvtColor(frame, self.cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
