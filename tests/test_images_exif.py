"""EXIF orientation on every image path (load, the working copy, crop; bytes and paths), and
the per-call size limit that leaves PIL's process-wide one alone."""

import io

import numpy as np
import pytest
from inference_fakes import jpeg_with_orientation
from PIL import Image, ImageOps

from agr_jax.inference import images


def _scene(h=120, w=200) -> np.ndarray:
    """Smooth, asymmetric content (JPEG keeps it; every turn of it differs)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x + 2 * y) % 256], axis=-1).astype(np.uint8)
    img[10:40, 20:70] = (250, 30, 30)  # a red block near the top-left corner
    return img


def _reference(data: bytes) -> np.ndarray:
    """PIL's own decode and EXIF transpose: what every path must match."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def _close(a: np.ndarray, b: np.ndarray, tol: float = 2.0) -> None:
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() < tol


@pytest.fixture(params=["bytes", "path"])
def as_input(request, tmp_path):
    def convert(data: bytes):
        if request.param == "bytes":
            return data
        path = tmp_path / "photo.jpg"
        path.write_bytes(data)
        return str(path)
    return convert


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_load_and_working_copy_are_upright(orientation, as_input):
    data = jpeg_with_orientation(_scene(), orientation)
    want = _reference(data)
    assert want.shape[:2] == ((200, 120) if orientation in (6, 8) else (120, 200))
    loaded = images.load(as_input(data))
    assert loaded.size == (want.shape[1], want.shape[0])
    _close(loaded.image, want)
    # the reduced-scale working copy and the lazily decoded full resolution, upright too
    bounded = images.load(as_input(data), bound=images.Bound(scale=0.5, min_side=0))
    assert max(bounded.work.shape[:2]) == 100 and bounded.work.shape[:2] == (
        want.shape[0] // 2, want.shape[1] // 2)
    _close(bounded.work, np.asarray(Image.fromarray(want).resize(bounded.work.shape[1::-1])),
           tol=4.0)
    _close(bounded.image, want)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_crop_is_upright(orientation, as_input):
    data = jpeg_with_orientation(_scene(), orientation)
    want = _reference(data)
    crop = images.crop(as_input(data), 64)
    assert crop.source_size == (want.shape[1], want.shape[0])
    resized = np.asarray(Image.fromarray(want).resize((64, 64), Image.Resampling.BILINEAR))
    _close(crop.image, resized, tol=4.0)
    # the red block ends up where the turned photo has it, not where the raw pixels have it
    red = (crop.image[..., 0] > 200) & (crop.image[..., 1] < 90)
    want_red = (resized[..., 0] > 200) & (resized[..., 1] < 90)
    assert (red & want_red).sum() > 0.7 * want_red.sum() > 0


def test_orientation_1_and_no_exif_are_left_as_they_are():
    scene = _scene()
    plain = io.BytesIO()
    Image.fromarray(scene).save(plain, "JPEG", quality=95)
    for data in (jpeg_with_orientation(scene, 1), plain.getvalue()):
        _close(images.load(data).image, scene, tol=3.0)
        _close(images.crop(data, 200).image,
               np.asarray(Image.fromarray(scene).resize((200, 200))), tol=3.0)


def test_size_limit_is_per_call_and_leaves_pils_global_alone(monkeypatch):
    """A stricter process-wide PIL limit (someone else's setting) is neither changed nor
    consulted: 200x120 = 24,000 px would be a "bomb" under it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    buf = io.BytesIO()
    Image.fromarray(_scene()).save(buf, "PNG")
    assert images.load(buf.getvalue()).image.shape == (120, 200, 3)
    assert Image.MAX_IMAGE_PIXELS == 1_000
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    with pytest.raises(images.BadInput, match=r"too large: 200x120 = 0 MP"):
        images.load(buf.getvalue())
    with pytest.raises(images.BadInput, match="too large: 200x120"):
        images.load(jpeg_with_orientation(_scene(), 1), bound=images.Bound())
    assert Image.MAX_IMAGE_PIXELS == 1_000
