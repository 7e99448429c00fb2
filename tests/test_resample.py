"""Area resampling (MTCNN's pyramid and crops): torch's adaptive-average bins, and the
pyramid that shares one row pass across its levels equal to resizing each level alone."""

import numpy as np

from agr_jax.inference.resample import area_pyramid, area_resize


def _by_hand(image, h, w):
    """Each output pixel the mean of its torch bin: rows floor(i n / m) .. ceil((i+1) n / m)."""
    n, m = image.shape[:2]
    out = np.zeros((h, w, image.shape[2]))
    for i in range(h):
        for j in range(w):
            r0, r1 = i * n // h, -(-(i + 1) * n // h)
            c0, c1 = j * m // w, -(-(j + 1) * m // w)
            out[i, j] = image[r0:r1, c0:c1].reshape(-1, image.shape[2]).mean(0)
    return out


def test_area_resize_is_the_mean_of_torch_bins():
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    for h, w in ((5, 7), (12, 12), (17, 23), (30, 9)):
        np.testing.assert_allclose(area_resize(image, h, w), _by_hand(image, h, w), rtol=1e-5)


def test_pyramid_equals_each_level_resized_alone_bit_for_bit():
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    sizes = [(int(480 * s + 1), int(640 * s + 1)) for s in 0.6 * 0.709 ** np.arange(10)]
    for level, (h, w) in zip(area_pyramid(image, sizes), sizes, strict=True):
        assert level.dtype == np.float32
        np.testing.assert_array_equal(level, area_resize(image, h, w))

