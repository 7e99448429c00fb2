"""Area resampling (MTCNN's pyramid and crops): every output pixel is the mean of its torch
adaptive-average bin, checked against plain numpy means computed independently (no
cumulative sums), for single resizes and for every level of a pyramid sharing one row pass."""

import numpy as np
import pytest

from agr_jax.inference.resample import area_pyramid, area_resize

# float32 output of float64 means of 0..255 values: half an ulp at 255 is 7.6e-6
TOLERANCE = 2e-5


def _bin(i: int, n: int, m: int) -> slice:
    """torch's bin of output i of m over n inputs: floor(i n / m) .. ceil((i+1) n / m)."""
    return slice(i * n // m, -(-(i + 1) * n // m))


def _by_hand(image, h, w):
    """Each output pixel the mean of its bin, one pixel at a time (small images)."""
    n, m = image.shape[:2]
    out = np.zeros((h, w, image.shape[2]))
    for i in range(h):
        for j in range(w):
            out[i, j] = image[_bin(i, n, h), _bin(j, m, w)].reshape(-1, image.shape[2]).mean(0)
    return out


def _by_rows_then_columns(image, h, w):
    """The same means for large images: a rectangle's mean is the mean of its row means."""
    n, m = image.shape[:2]
    rows = np.stack([image[_bin(i, n, h)].mean(0, dtype=np.float64) for i in range(h)])
    return np.stack([rows[:, _bin(j, m, w)].mean(1) for j in range(w)], axis=1)


def test_area_resize_is_the_mean_of_torch_bins():
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    for h, w in ((5, 7), (12, 12), (17, 23), (30, 9)):
        got = area_resize(image, h, w)
        assert got.dtype == np.float32 and got.shape == (h, w, 3)
        np.testing.assert_allclose(got, _by_hand(image, h, w), rtol=0, atol=TOLERANCE)


def test_pyramid_levels_are_the_means_of_torch_bins():
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    sizes = [(int(480 * s + 1), int(640 * s + 1)) for s in 0.6 * 0.709 ** np.arange(10)]
    levels = area_pyramid(image, sizes)
    assert [level.shape[:2] for level in levels] == sizes
    for level, (h, w) in zip(levels, sizes, strict=True):
        assert level.dtype == np.float32
        np.testing.assert_allclose(level, _by_rows_then_columns(image, h, w), rtol=0,
                                   atol=TOLERANCE, err_msg=f"level {h}x{w}")


def test_the_reference_sees_a_shifted_bin():
    """The comparison is fine enough to catch means taken one row off, and the two
    references agree with each other."""
    image = np.random.default_rng(2).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    shifted = _by_rows_then_columns(image[1:], 13, 10)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(area_resize(image, 13, 10), shifted, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(_by_rows_then_columns(image, 13, 10), _by_hand(image, 13, 10),
                               rtol=0, atol=1e-9)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="bad shapes"):
        area_pyramid(np.zeros((4, 4), np.uint8), [(2, 2)])
    with pytest.raises(ValueError, match="bad shapes"):
        area_resize(np.zeros((4, 4, 3), np.uint8), 0, 2)
