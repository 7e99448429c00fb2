"""Face detectors behind the `Detector` contract: YuNet and MTCNN in JAX, OpenCV's Haar cascade.

YuNet (`agr_jax.inference.yunet`) decodes as OpenCV's FaceDetectorYN; see docs/detection.md.

MTCNN follows facenet-pytorch's `detect_face` step by step (same pyramid, area resampling,
thresholds, NMS kinds and box arithmetic), so its boxes and landmarks match it within a pixel
(tests/test_mtcnn.py). The nets run jitted on fixed shapes only: images go into canvases of a
few bucket sizes (each canvas has one fixed pyramid), and R-/O-Net proposals are padded to a
few batch sizes, so new image sizes within a bucket compile nothing. NMS runs on the host.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import jax
import numpy as np

from agr_jax.inference import boxes as bx
from agr_jax.inference.faces import Detector, Face
from agr_jax.inference.faces import check_image as _check_image
from agr_jax.inference.mtcnn import WEIGHTS, ONet, PNet, RNet, load_params
from agr_jax.inference.resample import area_pyramid, area_resize
from agr_jax.inference.yunet import YuNetDetector

# Canvas side lengths; an image goes into the smallest (height, width) canvas that holds it.
SIDE_BUCKETS = (128, 192, 256, 320, 384, 480, 640, 800, 960, 1280, 1600, 1920, 2560, 3200,
                3840, 5120, 7680)
PROPOSAL_BUCKETS = (64, 256, 1024)  # R-/O-Net batch sizes; more proposals run in chunks


def side_bucket(n: int) -> int:
    i = bisect.bisect_left(SIDE_BUCKETS, n)
    return SIDE_BUCKETS[i] if i < len(SIDE_BUCKETS) else -(-n // 2560) * 2560


def pyramid_scales(min_side: int, min_face_size: float, factor: float) -> list[float]:
    """facenet-pytorch's scale pyramid (same float operations, so the same scales)."""
    m = 12.0 / min_face_size
    minl = min_side * m
    scales, scale = [], m
    while minl >= 12:
        scales.append(scale)
        scale, minl = scale * factor, minl * factor
    return scales


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125)


def _pnet_output_size(n: int) -> int:
    """P-Net output cells along a side of n input pixels (conv3, ceil pool 2, conv3, conv3)."""
    return -(-(n - 4) // 2) + 1 - 4


class MTCNNDetector:
    """MTCNN with facenet-pytorch's defaults; `detect` returns faces largest first per image."""

    name = "mtcnn"

    def __init__(self, min_face_size: float = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, weights: str | Path = WEIGHTS, max_batch: int = 8):
        if len(thresholds) != 3 or not 0 < factor < 1 or min_face_size <= 0 or max_batch < 1:
            raise ValueError("MTCNNDetector: need 3 thresholds, 0 < factor < 1, "
                             "min_face_size > 0 and max_batch >= 1")
        self.min_face_size, self.thresholds, self.factor = min_face_size, tuple(thresholds), factor
        self.max_batch = max_batch
        self.params = load_params(weights)
        self.compiles = 0  # traces of the jitted nets: a new shape costs one
        self._pnet = jax.jit(self._pnet_pyramid)
        self._rnet = jax.jit(partial(self._apply, RNet()))
        self._onet = jax.jit(partial(self._apply, ONet()))

    def warmup(self, max_side: int = 480) -> int:
        """Compile P-Net for the square, 4:3 and 3:4 canvases of SIDE_BUCKETS up to
        `max_side` (batch 1) and R-/O-Net at every proposal batch; returns how many programs
        that compiled. Other canvases (all of SIDE_BUCKETS would take minutes) compile on use."""
        before = self.compiles
        sides = [s for s in SIDE_BUCKETS if s <= max_side]
        shapes = {(side_bucket(h), side_bucket(w)) for s in sides
                  for h, w in ((s, s), (s * 3 // 4, s), (s, s * 3 // 4))}
        for hb, wb in sorted(shapes):
            self.detect([np.zeros((hb, wb, 3), np.uint8)])
        for size in PROPOSAL_BUCKETS:
            for net, key, side in ((self._rnet, "rnet", 24), (self._onet, "onet", 48)):
                jax.block_until_ready(net(self.params[key], np.zeros((size, side, side, 3),
                                                                     np.float32)))
        return self.compiles - before

    # -- jitted nets on fixed shapes ------------------------------------------------------
    # full float32 matmuls/convs: TF32 on GPUs would move boxes away from the reference
    def _pnet_pyramid(self, params, canvases, valid):
        self.compiles += 1
        with jax.default_matmul_precision("float32"):
            return [PNet().apply({"params": params}, x, valid[:, k])
                    for k, x in enumerate(canvases)]

    def _apply(self, module, params, crops):
        self.compiles += 1
        with jax.default_matmul_precision("float32"):
            return module.apply({"params": params}, crops)

    def _run_padded(self, net, params, crops: np.ndarray) -> list[np.ndarray]:
        """A net over N crops in chunks padded to PROPOSAL_BUCKETS sizes; outputs cut to N."""
        outs = []
        for start in range(0, len(crops), PROPOSAL_BUCKETS[-1]):
            chunk = crops[start:start + PROPOSAL_BUCKETS[-1]]
            size = PROPOSAL_BUCKETS[bisect.bisect_left(PROPOSAL_BUCKETS, len(chunk))]
            padded = np.zeros((size, *chunk.shape[1:]), np.float32)
            padded[:len(chunk)] = chunk
            outs.append([np.asarray(o)[:len(chunk)] for o in net(params, padded)])
        return [np.concatenate(parts) for parts in zip(*outs, strict=True)]

    # -- stages -------------------------------------------------------------------------
    def _stage1(self, images: list[np.ndarray]):
        """P-Net over each image's pyramid: squared candidate boxes, scores, image ids."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault((side_bucket(im.shape[0]), side_bucket(im.shape[1])), []).append(i)
        found = []
        for (hb, wb), members in groups.items():
            bucket_scales = pyramid_scales(min(hb, wb), self.min_face_size, self.factor)
            for start in range(0, len(members), self.max_batch):
                chunk = members[start:start + self.max_batch]
                found += self._pnet_chunk([images[i] for i in chunk], chunk, hb, wb,
                                          bucket_scales)
        if not found:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        boxes, scores, regs, ids = (np.concatenate(x) for x in zip(*found, strict=True))
        keep = bx.per_image(bx.nms, boxes, scores, ids, 0.7)
        boxes = bx.square(bx.regress(boxes[keep], regs[keep], plus_one=False))
        return boxes, scores[keep], ids[keep]

    def _pnet_chunk(self, chunk_images, ids, hb, wb, bucket_scales):
        if not bucket_scales:
            return []
        batch = 1 << (len(chunk_images) - 1).bit_length()
        canvases = [np.zeros((batch, int(hb * s + 1), int(wb * s + 1), 3), np.float32)
                    for s in bucket_scales]
        valid = np.full((batch, len(bucket_scales), 2), 12, np.int32)
        per_image_scales = []
        for b, im in enumerate(chunk_images):
            h, w = im.shape[:2]
            scales = pyramid_scales(min(h, w), self.min_face_size, self.factor)
            per_image_scales.append(scales)
            sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
            for k, ((hs, ws), level) in enumerate(zip(sizes, area_pyramid(im, sizes),
                                                      strict=True)):
                canvases[k][b, :hs, :ws] = _normalise(level)
                valid[b, k] = (hs, ws)
        outputs = jax.device_get(self._pnet(self.params["pnet"], canvases, valid))
        found = []
        for b, scales in enumerate(per_image_scales):
            for k, s in enumerate(scales):
                prob, reg = outputs[k][0][b], outputs[k][1][b]
                oh, ow = (_pnet_output_size(int(n)) for n in valid[b, k])
                prob, reg = prob[:oh, :ow], reg[:oh, :ow]
                ys, xs = np.nonzero(prob >= self.thresholds[0])
                if ys.size == 0:
                    continue
                cells = np.stack([xs, ys], axis=1).astype(np.float32)
                scale = np.float32(s)
                q1 = np.floor((2 * cells + 1) / scale)
                q2 = np.floor((2 * cells + 12) / scale)
                boxes = np.concatenate([q1, q2], axis=1).astype(np.float32)
                scores = prob[ys, xs]
                keep = bx.nms(boxes, scores, 0.5)
                found.append((boxes[keep], scores[keep], reg[ys, xs][keep],
                              np.full(keep.size, ids[b], np.int64)))
        return found

    def _crops(self, images, boxes, ids, size):
        """Area-resized, normalised crops of each box's pixel window; boxes whose window is
        empty (wholly outside the image) are dropped (`kept` says which remain)."""
        heights = np.array([images[i].shape[0] for i in ids])
        widths = np.array([images[i].shape[1] for i in ids])
        windows = bx.crop_windows(boxes, widths, heights)
        kept = np.flatnonzero((windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1]))
        crops = np.zeros((kept.size, size, size, 3), np.float32)
        for j, k in enumerate(kept):
            x0, y0, x1, y1 = windows[k]
            crops[j] = _normalise(area_resize(images[ids[k]][y0:y1, x0:x1], size, size))
        return crops, kept

    def _stage2(self, images, boxes, ids):
        crops, kept = self._crops(images, boxes, ids, 24)
        boxes, ids = boxes[kept], ids[kept]
        prob, reg = self._run_padded(self._rnet, self.params["rnet"], crops)
        ok = prob > self.thresholds[1]
        boxes, scores, reg, ids = boxes[ok], prob[ok], reg[ok], ids[ok]
        keep = bx.per_image(bx.nms, boxes, scores, ids, 0.7)
        return bx.square(bx.regress(boxes[keep], reg[keep])), scores[keep], ids[keep]

    def _stage3(self, images, boxes, ids):
        crops, kept = self._crops(images, boxes, ids, 48)
        boxes, ids = boxes[kept], ids[kept]
        prob, reg, marks = self._run_padded(self._onet, self.params["onet"], crops)
        ok = prob > self.thresholds[2]
        boxes, scores, reg, marks, ids = boxes[ok], prob[ok], reg[ok], marks[ok], ids[ok]
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        points = np.stack([size[:, None, 0] * marks[:, :5] + boxes[:, None, 0] - 1,
                           size[:, None, 1] * marks[:, 5:] + boxes[:, None, 1] - 1], axis=-1)
        boxes = bx.regress(boxes, reg)
        keep = bx.per_image(bx.nms_min, boxes, scores, ids, 0.7)
        return boxes[keep], scores[keep], points[keep].astype(np.float32), ids[keep]

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = list(images)
        for i, im in enumerate(images):
            _check_image(im, i)
        boxes, scores, ids = self._stage1(images)
        if len(boxes):
            boxes, scores, ids = self._stage2(images, boxes, ids)
        points = np.zeros((0, 5, 2), np.float32)
        if len(boxes):
            boxes, scores, points, ids = self._stage3(images, boxes, ids)
        faces: list[list[Face]] = [[] for _ in images]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for k in np.argsort(-area, kind="stable"):
            faces[ids[k]].append(Face(boxes[k].astype(np.float32), float(scores[k]), points[k]))
        return faces


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (box only; the score is 1.0: the cascade gives no
    probability). A fallback for machines where MTCNN is unwanted; needs opencv."""

    name = "haar"

    def __init__(self, min_face_size: int = 20, scale_factor: float = 1.1, min_neighbors: int = 5):
        try:
            import cv2
        except ImportError as err:
            raise ImportError("the haar detector needs OpenCV: "
                              "pip install 'opencv-python-headless<5'") from err
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FileNotFoundError(f"OpenCV's Haar cascade is missing at {path} (OpenCV 5 no "
                                    "longer ships it: pip install 'opencv-python-headless<5')")
        self._cv2 = cv2
        self.min_size = (int(min_face_size),) * 2
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        out = []
        for i, im in enumerate(images):
            _check_image(im, i)
            gray = self._cv2.cvtColor(im, self._cv2.COLOR_RGB2GRAY)
            rects = self._cascade.detectMultiScale(gray, scaleFactor=self.scale_factor,
                                                   minNeighbors=self.min_neighbors,
                                                   minSize=self.min_size)
            rects = sorted((tuple(r) for r in rects), key=lambda r: -r[2] * r[3])
            out.append([Face(np.array([x, y, x + w, y + h], np.float32), 1.0, None)
                        for x, y, w, h in rects])
        return out


DETECTORS = {"yunet": YuNetDetector, "mtcnn": MTCNNDetector, "haar": HaarDetector}


def build_detector(name: str, **kwargs) -> Detector:
    """A detector by name ("yunet", "mtcnn" or "haar"); kwargs go to its constructor."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}")
    return DETECTORS[name](**kwargs)
