"""Boxes and labels drawn on copies of the inputs (PIL for images, OpenCV for video)."""

from __future__ import annotations

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


def image_out_path(directory: Path, source: str) -> Path:
    name = Path(source.split("#", 1)[0]).name
    return directory / (Path(name).stem + ".annotated.png")


class VideoWriter:
    """Annotated frames to an .mp4 (mp4v) beside the other outputs."""

    def __init__(self, path: Path, fps: float):
        from agr_jax.inference.video import cv2_module

        self.cv2, self.path, self.fps, self.writer = cv2_module(), path, fps, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame.shape[:2]
            fourcc = self.cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = self.cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
        self.writer.write(self.cv2.cvtColor(frame, self.cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
