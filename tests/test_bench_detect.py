"""The detection benchmark's scene builders (agr_jax/bench/detect.py) on tiny inputs, and a
real detector finding every pasted face of a real-crop scene."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from agr_jax.bench import detect as bench_detect
from agr_jax.inference.detect import MTCNNDetector

SHARED_UTKFACE = Path(os.environ.get(
    "AGR_JAX_UTKFACE", Path(__file__).resolve().parents[1].parent / "shared" / "utkface"))


def test_scenes_fall_back_to_synthetic(tmp_path):
    images, source = bench_detect.scenes(2, utkface_dir=tmp_path)
    assert source == "synthetic" and len(images) == 2
    assert images[0].shape == (480, 640, 3) and images[0].dtype == np.uint8


def test_crop_scene_pastes_every_crop():
    crops = [np.full((50, 50, 3), 10 * (k + 1), np.uint8) for k in range(4)]
    scene = bench_detect.crop_scene(crops, seed=3)
    for k in range(4):
        assert (scene == 10 * (k + 1)).all(axis=-1).sum() >= 80 * 80


def test_photos_per_second_counts_every_pasted_face():
    if not bench_detect.crop_paths(SHARED_UTKFACE):
        pytest.skip(f"needs real UTKFace crops in {SHARED_UTKFACE} (../shared/utkface)")
    images, source = bench_detect.scenes(2, 4, SHARED_UTKFACE, seed=1)
    assert source == "utkface"
    result = bench_detect.photos_per_second(MTCNNDetector(), images, batch=2, rounds=1)
    assert result["photos"] == 2 and result["photos_per_s"] > 0 and result["detector"] == "mtcnn"
    assert result["faces_per_photo"] == 4  # four real crops pasted per scene, none overlapping


def test_match_pairs_one_to_one_by_overlap():
    truth = np.array([[0, 0, 100, 100], [200, 0, 300, 100]])
    found = np.array([[10, 10, 90, 90],  # inside the first: IoU 0.64
                      [0, 0, 100, 100],  # the first exactly: takes it
                      [260, 0, 360, 100],  # half over the second: IoU 40/160 = 0.25
                      [500, 500, 510, 510]])  # nothing
    assert bench_detect.match(found, truth).tolist() == [-1, 0, -1, -1]
    assert bench_detect.match(found, truth, min_iou=0.2).tolist() == [-1, 0, 1, -1]
    assert bench_detect.match(np.zeros((0, 4)), truth).tolist() == []


def test_shuffled_background_keeps_the_photos_colours_but_not_its_layout():
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[:, :200] = (200, 40, 40)  # red left half, blue right half
    photo[:, 200:] = (40, 40, 200)
    out = bench_detect.shuffled_background(photo, 240, 320, seed=0)
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8
    assert np.allclose(out.reshape(-1, 3).mean(0), (120, 40, 120), atol=12)
    # the halves are mixed: the left half is no longer all red
    assert abs(out[:, :160, 0].mean() - out[:, 160:, 0].mean()) < 40


def test_composite_pastes_without_overlap_and_returns_the_boxes():
    crops = [np.full((40, 40, 3), 50 + 20 * k, np.uint8) for k in range(5)]
    image, boxes = bench_detect.composite(crops, np.zeros((200, 300, 3), np.uint8), (30, 50),
                                          seed=2)
    assert boxes.shape == (5, 4)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        assert 0 <= x0 and 0 <= y0 and x1 <= 300 and y1 <= 200 and 30 <= x1 - x0 <= 50
        assert (image[y0:y1, x0:x1] == 50 + 20 * k).all()  # untouched by any other crop
    with pytest.raises(ValueError, match="do not fit"):
        bench_detect.composite(crops, np.zeros((60, 60, 3), np.uint8), (30, 50))


def test_fit_on_background_keeps_the_whole_photo_and_its_aspect():
    photo = np.full((100, 200, 3), 255, np.uint8)
    out = bench_detect.fit_on_background(photo, np.zeros((300, 300, 3), np.uint8))
    ys, xs = np.nonzero(out[..., 0] == 255)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (0, 299, 75, 224)


def test_detect_quality_counts_found_and_false_faces():
    from benchmarks import detect_quality

    three = np.zeros((3, 4))
    assert detect_quality.score_photo(three, faces=2) == {
        "faces": 2, "extra_ok": 0, "detections": 3, "found": 2, "false": 1}
    assert detect_quality.score_photo(three, faces=2, extra_ok=1)["false"] == 0
    assert detect_quality.score_photo(three, faces=5)["found"] == 3
    truth = np.array([[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100]])
    found = np.array([[10, 10, 90, 90], [205, 5, 295, 95], [600, 0, 700, 100]])
    row, matched = detect_quality.score_scene(found, truth)
    assert row == {"faces": 3, "detections": 3, "found": 2, "false": 1}
    assert matched.tolist() == [0, 1, -1]
