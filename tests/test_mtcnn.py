"""MTCNN in JAX against facenet-pytorch's MTCNN (boxes and landmarks within 1 px), its weight
converter, its no-recompile bucketing, and the Haar fallback.

The reference runs through benchmarks/facenet_reference.py: when torchvision cannot be imported
(the PyPI torchvision 0.28.0 wheel fails with "operator torchvision::nms does not exist" next
to torch 2.13.0+cpu), facenet-pytorch gets a pure-torch `batched_nms` with torchvision's exact
semantics; the rest of its detect_face runs unchanged. Needs `torch` (the `test` extra) and
`pip install --no-deps facenet-pytorch==2.6.0` (the Makefile does both); skipped otherwise.
Real-image cases also need ../shared/utkface. Measured max differences are printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agr_jax.bench.detect import cartoon_scene, crop_scene
from agr_jax.inference.detect import MTCNNDetector, build_detector, side_bucket
from agr_jax.inference.mtcnn import WEIGHTS

# ../shared/utkface beside the clone (as CI has it); AGR_JAX_UTKFACE points elsewhere (worktrees)
SHARED_UTKFACE = Path(os.environ.get(
    "AGR_JAX_UTKFACE", Path(__file__).resolve().parents[1].parent / "shared" / "utkface"))
TOLERANCE_PX = 1.0
LOW_THRESHOLDS = (0.3, 0.4, 0.4)  # generated faces are cartoons: let proposals reach O-Net


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("torch", reason="torch not installed: parity test needs the `test` extra")
    from benchmarks.facenet_reference import load_reference_mtcnn

    try:
        mtcnn, stand_in = load_reference_mtcnn()
    except ImportError as err:
        pytest.skip(f"facenet-pytorch not installed (pip install --no-deps "
                    f"facenet-pytorch==2.6.0): {err}")
    return mtcnn, stand_in


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector()


def _utk_crops(n: int) -> list[np.ndarray]:
    if not SHARED_UTKFACE.is_dir():
        pytest.skip(f"real UTKFace crops not present at {SHARED_UTKFACE}")
    paths = sorted(SHARED_UTKFACE.glob("*.jpg"))[::997][:n]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _differences(mtcnn, ours: MTCNNDetector, image: np.ndarray) -> tuple[int, float, float]:
    """(faces, max box difference, max landmark difference) in px; asserts the same count."""
    from benchmarks.facenet_reference import reference_detect

    boxes, probs, points = reference_detect(mtcnn, image)
    faces = ours.detect([image])[0]
    assert len(faces) == len(boxes), f"faces: reference {len(boxes)}, ours {len(faces)}"
    box_diff = mark_diff = 0.0
    for box, point in zip(boxes, points, strict=True):
        # match by box (the largest-first order can swap near-equal areas)
        face = min(faces, key=lambda f: np.abs(f.box - box).max())
        box_diff = max(box_diff, float(np.abs(face.box - box).max()))
        mark_diff = max(mark_diff, float(np.abs(face.landmarks - point).max()))
    return len(boxes), box_diff, mark_diff


def _report(capsys, label: str, results: list[tuple[int, float, float]], stand_in: bool) -> None:
    faces = sum(r[0] for r in results)
    box, mark = max(r[1] for r in results), max(r[2] for r in results)
    with capsys.disabled():
        print(f"\n[mtcnn parity, {label}] {len(results)} images, {faces} faces: max |box diff| "
              f"{box:.2g} px, max |landmark diff| {mark:.2g} px"
              f"{' (reference NMS: pure-torch stand-in)' if stand_in else ''}")
    assert faces > 0, "no faces at all: the comparison would be empty"
    assert box <= TOLERANCE_PX and mark <= TOLERANCE_PX


def test_parity_generated_images(reference, capsys):
    mtcnn, stand_in = reference
    mtcnn.thresholds = list(LOW_THRESHOLDS)
    try:
        ours = MTCNNDetector(thresholds=LOW_THRESHOLDS)
        results = [_differences(mtcnn, ours, cartoon_scene(h, w, seed))
                   for seed, (h, w) in enumerate([(240, 320), (300, 250), (200, 200)])]
    finally:
        mtcnn.thresholds = [0.6, 0.7, 0.7]
    _report(capsys, "generated", results, stand_in)


def test_parity_real_faces(reference, detector, capsys):
    mtcnn, stand_in = reference
    crops = _utk_crops(6)
    padded = [np.pad(c, ((40, 60), (70, 30), (0, 0))) for c in crops[:2]]
    cut = np.pad(crops[0][:, 30:], ((30, 30), (0, 130), (0, 0)))  # face cut by the left edge
    results = [_differences(mtcnn, detector, image)
               for image in [*padded, cut, crop_scene(crops[2:], seed=0)]]
    assert results[-1][0] >= 3, "the multi-face canvas should show most of its 4 faces"
    _report(capsys, "UTKFace", results, stand_in)


def test_converter_reproduces_committed_weights(tmp_path):
    pytest.importorskip("torch", reason="torch not installed")
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
    pytest.importorskip("cv2", reason="opencv not installed (the `haar` extra)")
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
