"""The contract between face detectors and the predictor: one `Face` per detection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Landmark order, as MTCNN returns them (image x, y in pixels).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """One detected face in source-image pixels."""

    box: np.ndarray  # (4,) float32: x0, y0, x1, y1
    score: float  # detector confidence in [0, 1]
    landmarks: np.ndarray | None  # (5, 2) float32 in LANDMARK_NAMES order; None: box-only detector


class Detector(Protocol):
    """Finds faces in a batch of RGB uint8 images (H, W, 3), any sizes."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]: ...


def check_image(image: np.ndarray, index: int) -> None:
    """A detector's input check: RGB uint8 (H, W, 3); the error names the image's index."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        desc = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ValueError(f"image {index}: expected an RGB uint8 array (H, W, 3), got {desc}")
