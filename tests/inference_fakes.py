"""Test doubles for inference: a tiny randomly initialised bundle, a scripted detector that
keeps the `faces.Detector` contract, and a box-crop `align` module standing in for the
real one (built on another branch)."""

from __future__ import annotations

import io
import sys
import types

import numpy as np

from agr_jax.inference.faces import Face

SIZE = 16


def tiny_bundle(calibration: dict | None = None, seed: int = 0):
    import jax
    import jax.numpy as jnp
    from conftest import make_tiny_config

    from agr_jax import tasks
    from agr_jax.inference.bundle import Bundle

    config = make_tiny_config()
    spec = tasks.TaskSpec()
    bundle = Bundle(model=config.model.to_dict(), task_spec=spec, image_size=SIZE,
                    gender_names=("male", "female"),
                    race_names=("White", "Black", "Asian", "Indian", "Others"),
                    variables={}, calibration=calibration)
    from conftest import FAST_COMPILE

    init = jax.jit(lambda: bundle.build_model().init(
        jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)), train=False),
        compiler_options=FAST_COMPILE)
    variables = init()
    bundle.variables = jax.device_get({"params": variables["params"],
                                       "batch_stats": variables.get("batch_stats", {})})
    return bundle


CALIBRATION = {"gender_temperature": 2.0, "race_temperature": 0.5,
               "age_interval": {"level": 0.9, "edges": [30.0], "low": [-3.0, -10.0],
                                "high": [4.0, 12.0]}}


class ScriptedDetector:
    """Returns, for an image whose top-left pixel has red value k, the k-th entry of
    `script` (a list of Face lists): tests choose the faces per image by colour. `name`:
    the detect= key it answers to (plumbing tests of the service use "scripted")."""

    def __init__(self, script: list[list[Face]], name: str = "mtcnn"):
        self.script, self.calls, self.name = script, 0, name

    def detect(self, images):
        self.calls += 1
        return [list(self.script[int(img[0, 0, 0]) % len(self.script)]) for img in images]


def face(x0, y0, x1, y1, score=0.99, landmarks=True) -> Face:
    box = np.array([x0, y0, x1, y1], np.float32)
    marks = None
    if landmarks:
        cx, cy, w = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
        marks = np.array([[cx - w / 5, cy - w / 8], [cx + w / 5, cy - w / 8], [cx, cy],
                          [cx - w / 6, cy + w / 5], [cx + w / 6, cy + w / 5]], np.float32)
    return Face(box, score, marks)


def install_fake_align(monkeypatch) -> dict:
    """Puts a box-crop `agr_jax.inference.align` in place; returns its call counts."""
    from PIL import Image

    calls = {"align_face": 0, "crop_box": 0}

    def through(points, frame):
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return points if frame is None else points @ frame[:, :2].T + frame[:, 2]

    def crop_box(image, box, size, frame=None):
        calls["crop_box"] += 1
        corners = through(box, frame)
        x0, y0 = corners.min(0).round().astype(int)
        x1, y1 = corners.max(0).round().astype(int)
        return np.asarray(Image.fromarray(image[max(y0, 0):y1, max(x0, 0):x1]).resize(
            (size, size), Image.Resampling.BILINEAR))

    def align_face(image, landmarks, size, frame=None):
        calls["align_face"] += 1
        centre = landmarks.mean(0)
        half = max(np.ptp(landmarks[:, 0]), 4.0) * 1.2
        return crop_box(image, [centre[0] - half, centre[1] - half, centre[0] + half,
                                centre[1] + half], size, frame)

    module = types.ModuleType("agr_jax.inference.align")
    module.crop_box, module.align_face = crop_box, align_face
    module.landmark_matrix = module.box_matrix = lambda points, size: np.eye(2, 3)
    module.reduction = lambda matrices: 1  # the fake crops read the full resolution
    monkeypatch.setitem(sys.modules, "agr_jax.inference.align", module)
    import agr_jax.inference

    monkeypatch.setattr(agr_jax.inference, "align", module, raising=False)
    return calls


def photo(red: int, h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A noisy RGB photo whose top-left pixel's red value picks its detector script."""
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[0, 0, 0] = red
    return img


def fast_predictor(bundle, **kwargs):
    """A Predictor compiled with XLA's cheap CPU options (tiny models: compile time rules)."""
    from conftest import FAST_COMPILE

    from agr_jax.inference.predictor import Predictor

    return Predictor(bundle, compiler_options=FAST_COMPILE, **kwargs)


def portrait() -> np.ndarray:
    """A real face that ships with a registry package: matplotlib's sample photo of Grace
    Hopper (512x600, public domain), for tests whose boxes must come from a real detector."""
    from matplotlib import cbook
    from PIL import Image

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))


def two_portraits(height: int = 480, width: int = 640) -> tuple[np.ndarray, list[tuple]]:
    """The portrait and its mirror side by side on grey, each filling half the width; returns
    the image and the two halves' (x0, y0, x1, y1) rectangles the faces lie in."""
    from PIL import Image

    image = np.full((height, width, 3), 96, np.uint8)
    face, half = portrait(), width // 2
    side_h = min(height, int(round(half * face.shape[0] / face.shape[1])))
    side_w = int(round(side_h * face.shape[1] / face.shape[0]))
    y0, rects = (height - side_h) // 2, []
    for k, img in enumerate((face, face[:, ::-1])):
        x0 = k * half + (half - side_w) // 2
        image[y0:y0 + side_h, x0:x0 + side_w] = np.asarray(
            Image.fromarray(np.ascontiguousarray(img)).resize((side_w, side_h)))
        rects.append((x0, y0, x0 + side_w, y0 + side_h))
    return image, rects


def jpeg_with_orientation(array: np.ndarray, orientation: int) -> bytes:
    """JPEG bytes of `array` as stored, with EXIF `orientation` (1..8) in its header."""
    from PIL import Image

    from agr_jax.inference import images

    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()
