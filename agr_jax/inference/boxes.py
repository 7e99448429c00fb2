"""MTCNN's host-side box arithmetic in numpy, with facenet-pytorch's exact conventions.

Boxes are float32 (N, 4) x0, y0, x1, y1. Where the reference mixes conventions (torchvision's
IoU without +1 for the first two stages, a +1 "Min" overlap for the last; +1 widths in box
regression but not in the P-Net regression), so do these functions, so results match it.
"""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.nms: greedy by descending score, drops IoU > threshold (areas without
    +1). Returns kept indices in descending score order."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0) * (y1 - y0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """facenet-pytorch's final-stage NMS: overlap = intersection / smaller area, +1 pixel
    areas; drops overlap > threshold. Kept indices in the order picked."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    # the reference's order, ties included: numpy's default argsort, taken from the end (O-Net
    # scores saturate at exactly 1.0, so which tied box wins decides the final box)
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        order = rest[w * h / np.minimum(areas[i], areas[rest]) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def per_image(fn, boxes: np.ndarray, scores: np.ndarray, image_ids: np.ndarray,
              threshold: float) -> np.ndarray:
    """Run an NMS per image; kept indices of all images, by descending score."""
    keep = [np.flatnonzero(image_ids == i)[fn(boxes[image_ids == i], scores[image_ids == i],
                                              threshold)] for i in np.unique(image_ids)]
    keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return keep[np.argsort(-scores[keep], kind="stable")]


def regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Apply box regression offsets (fractions of the box's width/height)."""
    size = boxes[:, 2:4] - boxes[:, 0:2] + (1 if plus_one else 0)
    return (boxes + reg * np.concatenate([size, size], axis=1)).astype(np.float32)


def square(boxes: np.ndarray) -> np.ndarray:
    """MTCNN's rerec: the square of side max(w, h) on the same centre."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    side = wh.max(axis=1, keepdims=True)
    start = boxes[:, 0:2] + wh * 0.5 - side * 0.5
    return np.concatenate([start, start + side], axis=1).astype(np.float32)


def crop_windows(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer pixel windows (x_start, y_start, x_end, y_end), python-slice style, that the
    reference crops for the next stage: truncate, then clip starts at 1 and ends at the image
    size, 1-based starts."""
    b = np.trunc(boxes).astype(np.int64)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], width), np.minimum(b[:, 3], height)
    return np.stack([x - 1, y - 1, ex, ey], axis=1)
