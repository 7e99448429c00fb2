"""YuNet (libfacedetection, Wu, Peng & Yu 2023) in Flax linen, and a detector around it.

The net is libfacedetection.train's `yunet_n` as exported to ONNX (BatchNorm folded into the
depthwise convolutions): a backbone of depthwise-separable units, a top-down neck and an
anchor-free head per stride (8, 16, 32) giving class score, objectness, box offsets and five
landmarks. Module names follow the ONNX initializers (`backbone.model0.conv2.conv1.weight`
-> backbone/model0/conv2/conv1/kernel; see `agr_jax.convert.yunet`), so the converter maps
them one to one. Input: NHWC float32 BGR pixels 0..255, no normalisation, sides multiples of
32; outputs as the ONNX graph's: (B, H/s * W/s, C) per stride, cls and obj after a sigmoid.

`YuNetDetector` decodes as OpenCV's `cv::FaceDetectorYN` (objdetect/src/face_detect.cpp)
does: score = sqrt(clamp(cls) * clamp(obj)); box centre = (cell + offset) * stride, size =
exp(offset) * stride; landmark = (cell + offset) * stride; then `cv::dnn::NMSBoxes` on the
integer-truncated (x, y, w, h) boxes (score threshold, IoU without +1, top_k).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from PIL import Image

from agr_jax.inference import boxes as bx
from agr_jax.inference.faces import Face, check_image
from agr_jax.models.conv import conv_general_dilated_for

WEIGHTS = Path(__file__).resolve().parent / "weights" / "yunet.npz"
STRIDES = (8, 16, 32)
HEADS = ("cls", "obj", "bbox", "kps")  # the ONNX outputs, in its order, per stride
HEAD_CHANNELS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
Keep = Callable[[jax.Array], jax.Array] | None  # zeroes a map beyond each image's valid area

# Smallest face (width of YuNet's box, px in the image the net sees) found reliably at the
# default score threshold 0.9. Upstream's ~10 px holds at WIDER FACE's evaluation threshold
# (0.02), not at 0.9: UTKFace crops shrunk onto a grey canvas (3 sets of 36, docs/detection.md)
# are found 86-92 % at 40 px, 64-67 % at 24 px, 25-39 % at 20 px; at threshold 0.8, 94-100 %
# from 24 px. (MTCNN's box on the same crops is ~1.17x wider.) tests/test_yunet.py checks it.
MIN_FACE_PX = 40
RUNTIMES = ("auto", "jax", "onnxruntime")


def _canvases(long_sides: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(height, width) per long side: square, 4:3 landscape, 3:4 portrait; multiples of 32."""
    out = []
    for side in long_sides:
        short = -(-side * 3 // 4 // 32) * 32
        out += [(short, side), (side, short), (side, side)]
    return tuple(out)


# Every image runs in one of these fixed canvases (the smallest by area that holds it), so a
# folder of photos in any sizes compiles at most len(CANVASES) * len(BATCHES) programs. 4:3 and
# 3:4 are what cameras and phones take; other shapes go into the next canvas that holds them.
CANVASES = _canvases((320, 480, 640, 960, 1280))
BATCHES = (1, 2, 4, 8)


class DPUnit(nn.Module):
    """libfacedetection's ConvDPUnit: 1x1 conv, depthwise 3x3 conv (BN folded), optional ReLU."""

    features: int
    relu: bool = True
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, keep: Keep = None) -> jax.Array:
        conv = conv_general_dilated_for(self.conv_impl)
        x = nn.Conv(self.features, (1, 1), name="conv1", conv_general_dilated=conv)(x)
        x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)),
                    feature_group_count=self.features, name="conv2",
                    conv_general_dilated=conv)(keep(x) if keep else x)
        return nn.relu(x) if self.relu else x


def _pool(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def _upsample2(x: jax.Array) -> jax.Array:
    """ONNX Resize nearest, scale 2, asymmetric/floor: each cell repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Stem(nn.Module):
    """backbone.model0: 3x3 stride-2 conv + ReLU, then a DP unit."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, keep: Keep = None) -> jax.Array:
        x = nn.Conv(16, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="conv1",
                    conv_general_dilated=conv_general_dilated_for(self.conv_impl))(x)
        return DPUnit(16, True, self.conv_impl, name="conv2")(nn.relu(x), keep)


class Stage(nn.Module):
    """backbone.model1..5 (libfacedetection's Conv4layerBlock): two DP units."""

    features_mid: int
    features_out: int
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, keep: Keep = None) -> jax.Array:
        x = DPUnit(self.features_mid, True, self.conv_impl, name="conv1")(x, keep)
        return DPUnit(self.features_out, True, self.conv_impl, name="conv2")(x, keep)


class Backbone(nn.Module):
    """Features at strides 8, 16 and 32."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, keep: Keep = None) -> tuple[jax.Array, ...]:
        impl = self.conv_impl
        x = _pool(Stem(impl, name="model0")(x, keep))
        x = Stage(16, 64, impl, name="model1")(x, keep)
        x = _pool(Stage(64, 64, impl, name="model2")(x, keep))
        f8 = Stage(64, 64, impl, name="model3")(x, keep)
        f16 = Stage(64, 64, impl, name="model4")(_pool(f8), keep)
        return f8, f16, Stage(64, 64, impl, name="model5")(_pool(f16), keep)


class Neck(nn.Module):
    """Top-down: each level adds the coarser level's output, upsampled, before its DP unit."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, f8, f16, f32, keep: Keep = None) -> tuple[jax.Array, ...]:
        impl = self.conv_impl
        p32 = DPUnit(64, True, impl, name="lateral_convs_2")(f32, keep)
        p16 = DPUnit(64, True, impl, name="lateral_convs_1")(f16 + _upsample2(p32), keep)
        p8 = DPUnit(64, True, impl, name="lateral_convs_0")(f8 + _upsample2(p16), keep)
        return p8, p16, p32


class Head(nn.Module):
    """Per level: a shared DP unit, then one DP unit (no ReLU) per output."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, levels: Sequence[jax.Array], keep: Keep = None) -> dict[str, jax.Array]:
        out = {}
        for level, (stride, feat) in enumerate(zip(STRIDES, levels, strict=True)):
            feat = DPUnit(64, True, self.conv_impl,
                          name=f"multi_level_share_convs_{level}_0")(feat, keep)
            for head in HEADS:
                y = DPUnit(HEAD_CHANNELS[head], False, self.conv_impl,
                           name=f"multi_level_{head}_{level}")(feat, keep)
                y = y.reshape(y.shape[0], -1, y.shape[-1])  # row-major cells, as ONNX's
                out[f"{head}_{stride}"] = jax.nn.sigmoid(y) if head in ("cls", "obj") else y
        return out


class YuNet(nn.Module):
    """yunet_n: {f"{head}_{stride}": (B, cells, channels)}, the ONNX graph's outputs."""

    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> dict[str, jax.Array]:
        """`valid` (B, 2): each image's (height, width) rounded up to 32 inside a bigger
        canvas. Every 3x3 conv then sees zeros beyond it, as at a canvas of exactly that
        size (OpenCV's padWithDivisor), so the outputs there do not depend on the canvas."""

        def keep(y: jax.Array) -> jax.Array:
            stride = x.shape[1] // y.shape[1]
            rows = jnp.arange(y.shape[1])[None, :] < valid[:, 0:1] // stride
            cols = jnp.arange(y.shape[2])[None, :] < valid[:, 1:2] // stride
            return jnp.where((rows[:, :, None] & cols[:, None, :])[..., None], y, 0)

        keep_fn = None if valid is None else keep
        levels = Neck(self.conv_impl, name="neck")(
            *Backbone(self.conv_impl, name="backbone")(x, keep_fn), keep_fn)
        return Head(self.conv_impl, name="bbox_head")(levels, keep_fn)


def load_params(path: str | Path = WEIGHTS) -> dict:
    """The nested params tree from the converter's flat npz ("backbone/model0/conv1/kernel")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"YuNet weights not found at {path}; create them with "
                                "`python -m agr_jax.convert yunet --onnx yunet_n_dynamic.onnx "
                                "--out DIR`")
    with np.load(path) as data:
        return traverse_util.unflatten_dict({k: jnp.asarray(data[k]) for k in data.files},
                                            sep="/")


def decode(outputs: dict[str, jax.Array], height: int, width: int,
           valid: jax.Array | None = None, xp=jnp) -> tuple[jax.Array, ...]:
    """Raw head outputs of a (height, width) canvas -> per cell score (B, N), box x0, y0, w, h
    (B, N, 4) and landmarks (B, N, 5, 2) in canvas pixels, cells ordered as OpenCV walks
    them (stride 8, 16, 32; row-major). Cells beyond an image's `valid` (height, width) (B,
    2), which OpenCV's smaller input would not have, score 0 (None: the whole canvas is the
    image). `xp`: jax.numpy inside the jitted program, numpy for onnxruntime's outputs."""
    scores, boxes, marks = [], [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        r, c = xp.meshgrid(xp.arange(rows, dtype=xp.float32),
                           xp.arange(cols, dtype=xp.float32), indexing="ij")
        cell = xp.stack([c.ravel(), r.ravel()], axis=-1)  # (N, 2) x, y
        cls = xp.clip(outputs[f"cls_{stride}"][..., 0], 0.0, 1.0)
        obj = xp.clip(outputs[f"obj_{stride}"][..., 0], 0.0, 1.0)
        score = xp.sqrt(cls * obj)
        if valid is not None:
            inside = ((cell[None, :, 0] < valid[:, 1:2] // stride)
                      & (cell[None, :, 1] < valid[:, 0:1] // stride))
            score = xp.where(inside, score, 0.0)
        scores.append(score)
        bbox = outputs[f"bbox_{stride}"]
        centre = (cell + bbox[..., :2]) * stride
        size = xp.exp(bbox[..., 2:]) * stride
        boxes.append(xp.concatenate([centre - size / 2, size], axis=-1))
        kps = outputs[f"kps_{stride}"].reshape(*bbox.shape[:2], 5, 2)
        marks.append((kps + cell[:, None, :]) * stride)
    return tuple(xp.concatenate(parts, axis=1) for parts in (scores, boxes, marks))


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
              nms_threshold: float, top_k: int) -> np.ndarray:
    """cv::dnn::NMSBoxes as FaceDetectorYN calls it: boxes (x, y, w, h) truncated to int
    Rects; scores > threshold, stable-sorted descending, the first top_k; greedy, keeping a
    box whose IoU (no +1) with every kept one is <= nms_threshold. Kept indices, in order."""
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    if top_k > 0:
        order = order[:top_k]
    rect = np.trunc(boxes[order].astype(np.float64))
    rect[:, 2:] += rect[:, :2]
    return order[bx.nms(rect, scores[order], nms_threshold)]


def onnxruntime_available() -> bool:
    """Whether `onnx` and `onnxruntime` import (the "export" extra installs them)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def pick_runtime(runtime: str = "auto") -> str:
    """"auto" -> "onnxruntime" where JAX computes on the CPU and it imports (faster there,
    docs/detection.md), else "jax" (GPU/TPU: the jitted net); others as asked."""
    if runtime != "auto":
        return runtime
    if jax.default_backend() == "cpu" and onnxruntime_available():
        return "onnxruntime"
    return "jax"


def canvas_for(height: int, width: int,
               canvases: Sequence[tuple[int, int]] = CANVASES) -> tuple[int, int]:
    """The smallest canvas (by area, then listing order) holding a height x width image."""
    fits = [c for c in canvases if c[0] >= height and c[1] >= width]
    if not fits:
        raise ValueError(f"no canvas holds a {height}x{width} image (largest: "
                         f"{max(canvases, key=lambda c: c[0] * c[1])})")
    return min(fits, key=lambda c: c[0] * c[1])


def _padded32(hw: Sequence[int]) -> tuple[int, int]:
    """(height, width) rounded up to multiples of 32."""
    return tuple(-(-n // 32) * 32 for n in hw)


def _pasted(images: Sequence[np.ndarray], batch: int, shape: tuple[int, int]) -> np.ndarray:
    """(batch, *shape, 3) uint8 zeros with each image in its top-left corner."""
    out = np.zeros((batch, *shape, 3), np.uint8)
    for b, im in enumerate(images):
        out[b, :im.shape[0], :im.shape[1]] = im
    return out


class YuNetDetector:
    """YuNet with OpenCV's FaceDetectorYN decoding; `detect` returns faces largest first.

    Defaults are upstream's: score 0.9, NMS 0.3, top_k 5000, as OpenCV's
    samples/dnn/face_detect.py (and opencv_zoo's YuNet demo) run FaceDetectorYN. An image
    whose long side exceeds `max_side` is area-downscaled to fit first (faces then need
    MIN_FACE_PX in the downscaled image); boxes and landmarks come back in its own pixels.
    Images go into the smallest of CANVASES that holds them (zeros right and bottom), and
    the net masks each to its size rounded up to 32 (OpenCV's padWithDivisor), so faces are
    what FaceDetectorYN finds at that size whatever the canvas. Images sharing a canvas run
    as one batch padded to a BATCHES size: a mixed folder compiles at most `programs()`
    programs (`warmup()` compiles them all; each costs ~3 s of CPU on 2 cores).

    `runtime`: "jax" runs the jitted Flax net as above; "onnxruntime" runs the same params
    as an NCHW ONNX graph (`yunet_onnx`; `detect` 1.5-1.9x faster on CPU, docs/detection.md),
    each image at its own size padded to 32 (OpenCV's input exactly: no canvases, no mask,
    no programs to compile), images of one padded size batched; "auto" takes onnxruntime when
    JAX's default backend is the CPU and `onnx` and `onnxruntime` import, else jax. Both
    share `decode`, NMS and `_fit`, so faces agree within float rounding.

    Landmarks: YuNet gives (right eye, left eye, nose, right mouth corner, left mouth
    corner) of the person, i.e. the image-left eye first; that is MTCNN's order and
    LANDMARK_NAMES ("left_eye" there is the eye on the image's left), so they pass as is
    (tests/test_yunet.py checks the eye order on real faces).
    """

    name = "yunet"

    def __init__(self, score_threshold: float = 0.9, nms_threshold: float = 0.3,
                 top_k: int = 5000, weights: str | Path = WEIGHTS, max_batch: int = 8,
                 max_side: int = max(max(c) for c in CANVASES), conv_impl: str = "auto",
                 runtime: str = "auto"):
        largest = max(max(c) for c in CANVASES)
        if not (0 <= score_threshold < 1 and 0 < nms_threshold <= 1 and max_batch >= 1
                and 32 <= max_side <= largest and runtime in RUNTIMES):
            raise ValueError("YuNetDetector: need 0 <= score_threshold < 1, 0 < nms_threshold "
                             f"<= 1, max_batch >= 1, 32 <= max_side <= {largest} and runtime "
                             f"in {RUNTIMES}; got {score_threshold}, {nms_threshold}, "
                             f"{max_batch}, {max_side}, {runtime!r}")
        self.runtime = pick_runtime(runtime)
        if self.runtime == "onnxruntime" and not onnxruntime_available():
            raise ImportError("YuNetDetector(runtime='onnxruntime') needs onnx and onnxruntime: "
                              "pip install 'agr_jax[export]'")
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        self.max_side = int(max_side)
        self.params = load_params(weights)
        self.net = YuNet(conv_impl)
        # the canvases an image fitted into max_side can land in (the JAX runtime's; both
        # runtimes keep them: the predictor bounds its working copy by their long sides)
        reach = canvas_for(self.max_side, self.max_side)
        self.canvases = tuple(c for c in CANVASES if c[0] * c[1] <= reach[0] * reach[1]
                              and max(c) <= max(reach))
        self.batches = tuple(b for b in BATCHES if b <= max_batch) or (1,)
        self.compiles = 0  # traces of the jitted net: a new shape costs one
        self._run = jax.jit(self._forward) if self.runtime == "jax" else None
        self._session = None  # onnxruntime's, built on first use

    def programs(self) -> int:
        """How many programs a folder of any sizes can compile at most (onnxruntime: 0)."""
        if self.runtime == "onnxruntime":
            return 0
        return len(self.canvases) * len(self.batches)

    def session(self):
        """The onnxruntime session of this detector's params, built once."""
        if self._session is None:
            from agr_jax.inference import yunet_onnx

            self._session = yunet_onnx.session(self.params)
        return self._session

    def _forward(self, params, canvas, valid):
        self.compiles += 1
        # full float32 convolutions: TF32 on GPUs would move boxes away from the reference
        with jax.default_matmul_precision("float32"):
            x = canvas[..., ::-1].astype(jnp.float32)  # RGB uint8 -> BGR float, as OpenCV's
            return decode(self.net.apply({"params": params}, x, valid), *canvas.shape[1:3],
                          valid)

    def warmup(self) -> int:
        """Compile every (canvas, batch) program `detect` can run; returns how many
        (onnxruntime: builds the session and runs one 32x32 image; nothing compiles, 0)."""
        if self.runtime == "onnxruntime":
            self._run_onnx(np.zeros((1, 32, 32, 3), np.uint8))
            return 0
        for h, w in self.canvases:
            for b in self.batches:
                jax.block_until_ready(self._run(self.params, np.zeros((b, h, w, 3), np.uint8),
                                                np.full((b, 2), 32, np.int32)))
        return self.programs()

    def _fit(self, image: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The image area-downscaled to fit max_side, with its x and y scale back.

        Pillow's BOX filter (area averaging in C, on uint8) rather than `resample.area_resize`:
        the same kind of average, 4-5x faster on a 1920x1440 photo (float64 sums there), and
        no reference to match bin for bin here."""
        h, w = image.shape[:2]
        if max(h, w) <= self.max_side:
            return image, 1.0, 1.0
        s = self.max_side / max(h, w)
        nh, nw = min(self.max_side, max(1, round(h * s))), min(self.max_side, max(1, round(w * s)))
        small = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BOX))
        return small, w / nw, h / nh

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = list(images)
        for i, im in enumerate(images):
            check_image(im, i)
        fitted = [self._fit(im) for im in images]
        faces: list[list[Face]] = [[] for _ in images]
        run = self._run_onnx_batch if self.runtime == "onnxruntime" else self._run_jax_batch
        for shape, ids in self._groups(fitted):
            scores, boxes, marks = run([fitted[i][0] for i in ids], shape)
            for b, i in enumerate(ids):
                faces[i] = self._faces(scores[b], boxes[b], marks[b], *fitted[i][1:])
        return faces

    def _groups(self, fitted: list) -> Iterator[tuple[tuple[int, int], list[int]]]:
        """(input shape, ids of at most max_batch images run in it): jax, the smallest of
        `canvases` holding each image (fixed shapes, at most programs() compiles);
        onnxruntime, each image's size padded to multiples of 32 only (OpenCV's
        padWithDivisor)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (im, _, _) in enumerate(fitted):
            shape = (_padded32(im.shape[:2]) if self.runtime == "onnxruntime"
                     else canvas_for(*im.shape[:2], self.canvases))
            groups.setdefault(shape, []).append(i)
        chunk = self.batches[-1]
        for shape, members in groups.items():
            for start in range(0, len(members), chunk):
                yield shape, members[start:start + chunk]

    def _run_jax_batch(self, images: list[np.ndarray],
                       shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
        """The jitted net on the images pasted into a canvas batch padded to BATCHES."""
        size = self.batches[bisect.bisect_left(self.batches, len(images))]
        valid = np.full((size, 2), 32, np.int32)  # padding rows: one block
        valid[:len(images)] = [_padded32(im.shape[:2]) for im in images]
        return jax.device_get(self._run(self.params, _pasted(images, size, shape), valid))

    def _run_onnx_batch(self, images: list[np.ndarray],
                        shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
        return self._run_onnx(_pasted(images, len(images), shape))

    def _run_onnx(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        from agr_jax.inference import yunet_onnx

        return decode(yunet_onnx.run(self.session(), batch), *batch.shape[1:3], xp=np)

    def _faces(self, scores, boxes, marks, sx: float, sy: float) -> list[Face]:
        keep = nms_boxes(boxes, scores, self.score_threshold, self.nms_threshold, self.top_k)
        scale = np.array([sx, sy], np.float32)
        corners = np.concatenate([boxes[keep, :2], boxes[keep, :2] + boxes[keep, 2:]], axis=1)
        corners = (corners * np.tile(scale, 2)).astype(np.float32)
        points = (marks[keep] * scale).astype(np.float32)
        area = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
        return [Face(corners[k], float(scores[keep[k]]), points[k])
                for k in np.argsort(-area, kind="stable")]
