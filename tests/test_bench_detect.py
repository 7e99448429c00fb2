"""Smoke test of the detection throughput helper (agr_jax/bench/detect.py) on tiny inputs."""

from __future__ import annotations

import numpy as np

from agr_jax.bench import detect as bench_detect
from agr_jax.inference.detect import MTCNNDetector


def test_scenes_fall_back_to_synthetic(tmp_path):
    images, source = bench_detect.scenes(2, utkface_dir=tmp_path)
    assert source == "synthetic" and len(images) == 2
    assert images[0].shape == (480, 640, 3) and images[0].dtype == np.uint8


def test_crop_scene_pastes_every_crop():
    crops = [np.full((50, 50, 3), 10 * (k + 1), np.uint8) for k in range(4)]
    scene = bench_detect.crop_scene(crops, seed=3)
    for k in range(4):
        assert (scene == 10 * (k + 1)).all(axis=-1).sum() >= 80 * 80


def test_photos_per_second_counts_photos_and_faces():
    detector = MTCNNDetector(min_face_size=60, thresholds=(0.3, 0.4, 0.4))
    images = [bench_detect.cartoon_scene(120, 160, seed) for seed in range(2)]
    result = bench_detect.photos_per_second(detector, images, batch=2, rounds=1)
    assert result["photos"] == 2 and result["photos_per_s"] > 0 and result["detector"] == "mtcnn"
    assert result["faces_per_photo"] >= 0
