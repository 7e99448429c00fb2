"""Face alignment: the similarity fit, the warp's pixel convention, and (on real UTKFace crops)
that an aligned face's detected landmarks land on the measured template."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agr_jax.inference import align

SHARED_UTKFACE = Path(os.environ.get(
    "AGR_JAX_UTKFACE", Path(__file__).resolve().parents[1].parent / "shared" / "utkface"))


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _smooth_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size // 10, size // 10, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    truth = _similarity(0.4, 1.7, (12.0, -5.0))
    src = rng.uniform(0, 100, (5, 2))
    np.testing.assert_allclose(align.similarity_transform(src, _apply(truth, src)), truth,
                               atol=1e-9)
    with pytest.raises(ValueError):
        align.similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))


def test_warp_round_trips_a_similarity():
    image = _smooth_image(160, seed=1)
    forward = _similarity(0.3, 0.8, (40.0, 10.0))
    there = align.warp_affine(image, forward, 160)
    back = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    again = align.warp_affine(there, back, 160)
    # compare where both warps stayed inside their images (centre region)
    inner = (slice(60, 100), slice(60, 100))
    diff = np.abs(again[inner].astype(int) - image[inner].astype(int))
    assert diff.mean() < 2.0 and diff.max() < 25


def test_aligned_landmarks_land_on_the_template():
    """Five coloured dots placed by a known similarity of the template end up, after
    align_face, at the template's pixels (checks the warp's pixel-centre convention)."""
    size, out = 400, 112
    where = _apply(_similarity(-0.35, 1.9, (120.0, 90.0)), align.template_points(112))
    image = np.zeros((size, size, 3), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, (x, y) in enumerate(where):
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = (40 * (k + 1), 255, 0)
    aligned = align.align_face(image, where, out)
    target = align.template_points(out)
    for k in range(5):
        mask = np.all(np.abs(aligned.astype(int) - (40 * (k + 1), 255, 0)) <= (15, 8, 30),
                      axis=-1)
        ys, xs = np.nonzero(mask)
        assert xs.size > 0, f"dot {k} vanished"
        np.testing.assert_allclose([xs.mean(), ys.mean()], target[k], atol=0.5)


def test_crop_box_of_the_template_box_is_the_identity():
    image = _smooth_image(200, seed=2)
    np.testing.assert_array_equal(align.crop_box(image, align.BOX_TEMPLATE * 200, 200), image)
    with pytest.raises(ValueError, match="empty box"):
        align.crop_box(image, np.array([5, 5, 5, 9]), 64)


def test_template_is_measured_and_plausible():
    t = align.TEMPLATE
    assert t[0, 0] < t[2, 0] < t[1, 0] and t[3, 0] < t[4, 0]  # left eye, nose, right eye
    assert t[:2, 1].max() < t[2, 1] < t[3:, 1].min()  # eyes above nose above mouth
    assert np.all((t > 0.1) & (t < 0.9))


@pytest.mark.skipif(not SHARED_UTKFACE.is_dir(), reason="real UTKFace crops not present")
def test_detected_landmarks_of_an_aligned_real_face_sit_on_the_template():
    from agr_jax.inference.detect import MTCNNDetector

    detector = MTCNNDetector()
    crop = np.asarray(Image.open(sorted(SHARED_UTKFACE.glob("*.jpg"))[500]).convert("RGB"))
    tilted = np.asarray(Image.fromarray(np.pad(crop, ((80, 80), (80, 80), (0, 0))))
                        .rotate(20, resample=Image.BILINEAR))
    face = detector.detect([tilted])[0][0]
    aligned = align.align_face(tilted, face.landmarks, 200)
    again = detector.detect([np.pad(aligned, ((50, 50), (50, 50), (0, 0)))])[0][0]
    # this face (crop 500) measured 1.9 px mean distance; the bounds leave room for MTCNN's
    # own jitter plus the face's shape (other crops: up to 10 px mean, docs/detection.md)
    distance = np.linalg.norm(again.landmarks - 50 - align.template_points(200), axis=1)
    assert distance.mean() < 5 and distance.max() < 10, distance


def test_a_shrinking_warp_is_the_training_resize_not_point_sampling():
    """Framing a 200 px crop to 80 px must give what training's decode gives (PIL's
    antialiased bilinear resize), not a point-sampled, aliased face."""
    from PIL import Image

    noise = np.random.default_rng(3).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    k = 80 / 200  # pixel-index coordinates: p_out + 0.5 = k * (p_in + 0.5)
    shrink = np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5]])
    expected = np.asarray(Image.fromarray(noise).resize((80, 80), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(align.warp_affine(noise, shrink, 80), expected)
    aliased = align._warp_point_sampled(noise, shrink, 80).astype(int)
    assert np.abs(aliased - expected).mean() > 20  # the test can tell the two apart


def test_a_large_face_is_box_reduced_first_and_reads_as_the_full_supersampled_warp(
        monkeypatch):
    """A 1,100 px face of a phone photo is box-reduced before the warp (bounded cost); the
    result stays what warping at the source's full scale gives, within a few grey levels."""
    small = np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.BICUBIC))
    matrix = _similarity(0.2, 112 / 1100, (-150.0, -100.0))
    reduced = align.warp_affine(photo, matrix, 112).astype(int)
    calls = []
    monkeypatch.setattr(align, "_box_reduced", lambda *a: calls.append(a) or (a[0], a[1]))
    monkeypatch.setattr(align, "MAX_SUPERSAMPLE", 16)  # 1,100 / 112 < 16: no reduction
    full = align.warp_affine(photo, matrix, 112).astype(int)
    assert not calls
    diff = np.abs(reduced - full)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12, (diff.mean(), diff.max())
    assert np.abs(reduced - np.roll(full, 3, axis=1)).mean() > 3 * diff.mean()  # can fail


def test_point_sampled_warp_is_bilinear_at_pixel_centres_with_a_black_outside():
    """PIL's affine transform (what the warp runs) against bilinear interpolation written
    out in numpy: the same samples, rounded, with the image's outside reading black."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (60, 80, 3), np.uint8)
    theta, scale = 0.3, 0.8
    matrix = np.array([[scale * np.cos(theta), -scale * np.sin(theta), -20.0],
                       [scale * np.sin(theta), scale * np.cos(theta), -5.0]])
    size = 70  # reads beyond the image on every side
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    padded = np.zeros((62, 82, 3), np.float64)
    padded[1:-1, 1:-1] = image
    ys, xs = np.mgrid[0:size, 0:size]
    u = np.clip(inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2] + 1, 0, 81)
    v = np.clip(inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2] + 1, 0, 61)
    c0, r0 = np.minimum(np.floor(u).astype(int), 80), np.minimum(np.floor(v).astype(int), 60)
    fx, fy = (u - c0)[..., None], (v - r0)[..., None]
    top = padded[r0, c0] * (1 - fx) + padded[r0, c0 + 1] * fx
    bottom = padded[r0 + 1, c0] * (1 - fx) + padded[r0 + 1, c0 + 1] * fx
    expected = np.rint(top * (1 - fy) + bottom * fy)
    ours = align._warp_point_sampled(image, matrix, size).astype(np.float64)
    assert np.abs(ours - expected).max() <= 1  # float32 planes: a tie may round either way
    assert (ours != expected).mean() < 1e-3
