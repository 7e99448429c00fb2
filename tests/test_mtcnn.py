"""MTCNN in JAX against facenet-pytorch's MTCNN, face for face, without torch: the reference
outputs (boxes, probabilities, landmarks) are committed in tests/data/mtcnn_reference.npz,
written by `python -m benchmarks.mtcnn_reference` (facenet-pytorch 2.6.0, torch CPU) on images
rebuilt identically here: generated cartoon scenes, the photo matplotlib ships, and UTKFace
crops when ../shared/utkface is there (those cases skip without it). Faces are paired one to
one (Hungarian assignment on IoU); counts must be equal, boxes and landmarks within 0.01 px,
probabilities within 1e-5. Also: the weight converter (needs torch), no-recompile bucketing,
the Haar fallback and the released model end to end. Measured max differences are printed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from agr_jax.inference.detect import MTCNNDetector, build_detector, side_bucket
from agr_jax.inference.mtcnn import WEIGHTS
from benchmarks import mtcnn_reference

# ../shared/utkface beside the clone (as CI has it); AGR_JAX_UTKFACE points elsewhere (worktrees)
SHARED_UTKFACE = Path(os.environ.get(
    "AGR_JAX_UTKFACE", Path(__file__).resolve().parents[1].parent / "shared" / "utkface"))
REFERENCE = Path(__file__).with_name("data") / "mtcnn_reference.npz"
TOLERANCE_PX = 0.01
TOLERANCE_PROB = 1e-5
MIN_IOU = 0.5  # a pair below this is not the same face
with np.load(REFERENCE) as _ref:
    CASES = sorted(k.split("/")[0] for k in _ref.files if k.endswith("/boxes"))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def images(reference) -> dict[str, tuple[np.ndarray, tuple[float, ...]]]:
    """Every case's image and thresholds; UTKFace cases only when their crops are on disk."""
    names = [str(n) for n in reference["utkface_files"]]
    have = names and all((SHARED_UTKFACE / n).is_file() for n in names)
    crops = mtcnn_reference.read_crops(SHARED_UTKFACE, names) if have else None
    return {name: (image, thresholds)
            for name, image, thresholds in mtcnn_reference.parity_images(crops)}


@functools.cache
def detector_with(thresholds: tuple[float, ...]) -> MTCNNDetector:
    return MTCNNDetector(thresholds=thresholds)


@pytest.fixture(scope="module")
def detector():
    return detector_with(mtcnn_reference.DEFAULT_THRESHOLDS)


def _utk_crops(n: int) -> list[np.ndarray]:
    if not SHARED_UTKFACE.is_dir():
        pytest.skip(f"real UTKFace crops not present at {SHARED_UTKFACE}")
    paths = sorted(SHARED_UTKFACE.glob("*.jpg"))[::997][:n]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] intersection over union of (x0, y0, x1, y1) boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def paired(want_boxes: np.ndarray, got_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (reference index, our index) maximising the summed IoU."""
    rows, cols = linear_sum_assignment(-iou(want_boxes, got_boxes))
    worst = iou(want_boxes, got_boxes)[rows, cols].min(initial=1.0)
    assert worst >= MIN_IOU, f"a face has no counterpart (best pairing IoU {worst:.2f})"
    return rows, cols


@pytest.mark.parametrize("case", CASES)
def test_parity_with_facenet_pytorch(case, reference, images, capsys):
    if case not in images:
        pytest.skip(f"case {case} needs the {len(reference['utkface_files'])} UTKFace crops "
                    f"named in {REFERENCE.name} at {SHARED_UTKFACE}")
    image, thresholds = images[case]
    assert mtcnn_reference.pixels_sha256(image) == str(reference[f"{case}/sha256"]), (
        f"{case}: the image is not the one the reference saw (a changed generator or "
        f"decoder?); rerun `python -m benchmarks.mtcnn_reference`")
    assert tuple(reference[f"{case}/thresholds"]) == thresholds
    want_boxes, want_probs, want_marks = (reference[f"{case}/{k}"]
                                          for k in ("boxes", "probs", "landmarks"))
    faces = detector_with(thresholds).detect([image])[0]
    assert len(faces) == len(want_boxes) > 0, \
        f"{case}: faces: reference {len(want_boxes)}, ours {len(faces)}"
    got_boxes = np.stack([f.box for f in faces]).astype(np.float64)
    rows, cols = paired(want_boxes, got_boxes)
    box = np.abs(got_boxes[cols] - want_boxes[rows]).max()
    mark = max(float(np.abs(faces[j].landmarks - want_marks[i]).max())
               for i, j in zip(rows, cols, strict=True))
    prob = max(abs(faces[j].score - want_probs[i]) for i, j in zip(rows, cols, strict=True))
    with capsys.disabled():
        print(f"\n[mtcnn parity, {case}] {len(faces)} faces: max |box diff| {box:.2g} px, "
              f"max |landmark diff| {mark:.2g} px, max |prob diff| {prob:.2g}")
    assert box <= TOLERANCE_PX and mark <= TOLERANCE_PX, (box, mark)
    assert prob <= TOLERANCE_PROB, prob


def test_pairing_is_one_to_one_and_refuses_strangers():
    """Two reference faces cannot both pair with one of ours (nearest-box matching could)."""
    want = np.array([[0, 0, 10, 10], [12, 0, 22, 10]], np.float64)
    rows, cols = paired(want, want[::-1] + 0.001)
    assert sorted(cols.tolist()) == [0, 1] and cols.tolist() == [1, 0]
    with pytest.raises(AssertionError, match="no counterpart"):
        paired(want, want + np.array([50, 0, 50, 0]))


def test_converter_reproduces_committed_weights(tmp_path):
    pytest.importorskip("torch", reason="the converter reads facenet-pytorch's .pt files: "
                        "pip install torch && pip install --no-deps facenet-pytorch==2.6.0")
    from agr_jax.convert import mtcnn as convert_mtcnn

    try:
        src = convert_mtcnn.installed_data_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    out = tmp_path / "mtcnn.npz"
    assert convert_mtcnn.main(["--src", str(src), "--out", str(out)]) == 0
    with np.load(out) as fresh, np.load(WEIGHTS) as committed:
        assert sorted(fresh.files) == sorted(committed.files)
        for key in fresh.files:
            np.testing.assert_array_equal(fresh[key], committed[key], err_msg=key)


def test_same_bucket_sizes_do_not_recompile(detector):
    first, second = np.zeros((200, 300, 3), np.uint8), np.zeros((250, 260, 3), np.uint8)
    assert side_bucket(200) == side_bucket(250) and side_bucket(300) == side_bucket(260)
    first[50:150, 100:200] = 200  # something for P-Net to look at
    detector.detect([first])
    compiles = detector.compiles
    detector.detect([second])
    assert detector.compiles == compiles, "a new image size in the same bucket recompiled"


def test_warmup_compiles_small_canvases_and_all_proposal_batches():
    detector = MTCNNDetector()
    assert detector.warmup(max_side=128) == detector.compiles == 1 + 2 * 3  # P-Net 128x128
    detector.detect([np.full((100, 120, 3), 128, np.uint8)])
    assert detector.compiles == 7


def test_finds_a_real_face_and_rejects_bad_input(detector):
    crop = _utk_crops(1)[0]
    faces = detector.detect([np.pad(crop, ((50, 50), (50, 50), (0, 0)))])[0]
    assert len(faces) == 1 and faces[0].score > 0.9 and faces[0].landmarks.shape == (5, 2)
    x0, y0, x1, y1 = faces[0].box
    assert 20 < x0 < 130 and 0 < y0 < 130 and 170 < x1 < 280 and 170 < y1 < 280
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="unknown detector"):
        build_detector("yolo")


def test_haar_detector_box_only():
    pytest.importorskip("cv2", reason="the Haar detector needs OpenCV 4: "
                        "pip install 'opencv-python-headless>=4.8,<5'")
    haar = build_detector("haar")
    crop = _utk_crops(1)[0]
    faces = haar.detect([np.pad(crop, ((50, 50), (50, 50), (0, 0))), np.zeros((64, 64, 3),
                                                                           np.uint8)])
    assert len(faces) == 2 and faces[1] == []
    assert len(faces[0]) >= 1 and faces[0][0].landmarks is None
    x0, y0, x1, y1 = faces[0][0].box
    assert 50 <= (x0 + x1) / 2 <= 250 and 50 <= (y0 + y1) / 2 <= 250


def test_released_model_detects_aligns_and_predicts_real_faces():
    """The whole path a user runs (`Predictor.default()`, real MTCNN, landmark alignment) on
    UTKFace crops padded into larger canvases: one face each, landmarks inside its box, an
    age inside its interval, probabilities that sum to 1."""
    from agr_jax.inference.predictor import Predictor

    crops = _utk_crops(3)  # UTKFace crops are 200 x 200
    canvases = []
    for crop in crops:
        canvas = np.full((crop.shape[0] * 2, crop.shape[1] * 2, 3), 128, np.uint8)
        canvas[100:100 + crop.shape[0], 150:150 + crop.shape[1]] = crop
        canvases.append(canvas)
    records = Predictor.default(buckets=(8,))(canvases, detect="mtcnn")
    assert [r["path"] for r in records] == [f"<array #{i}>" for i in range(3)], records
    for r in records:
        x0, y0, x1, y1 = r["box"]  # centred inside the pasted crop
        assert 150 < (x0 + x1) / 2 < 150 + 200 and 100 < (y0 + y1) / 2 < 100 + 200, r["box"]
        assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in r["landmarks"]), r
        lo, hi = r["age_interval"]
        assert lo <= r["age"] <= hi and not r["abstained"], r
        assert sum(r["race_prob"].values()) == pytest.approx(1.0, abs=1e-3)
        assert sum(r["gender_prob"].values()) == pytest.approx(1.0, abs=1e-3)
