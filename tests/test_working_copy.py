"""The detection working copy: its size rule, the reduced-scale JPEG decode with a lazy full
resolution, faces mapped back to photo pixels and cut from the full resolution, and a folder
of mixed sizes compiling a bounded set of detector programs."""

import io

import numpy as np
import pytest
import simplejpeg
from inference_fakes import (
    CALIBRATION,
    face,
    fast_predictor,
    jpeg_with_orientation,
    photo,
    tiny_bundle,
)
from PIL import Image

from agr_jax.inference import align, images
from agr_jax.inference.faces import Face
from agr_jax.inference.predictor import DEFAULT_DETECTOR, DETECTORS, face_crop, to_full


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(CALIBRATION)


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _smooth(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x * y) % 251], axis=-1).astype(np.uint8)


def test_bound_rule():
    bound = images.Bound(scale=10 / 48, max_side=1280, min_side=640,
                         sides=(320, 480, 640, 960, 1280))
    assert bound.size(4000, 3000) == (960, 720)  # 833 px rounded up to the 960 canvas
    assert bound.size(3000, 4000) == (720, 960)
    assert bound.size(1920, 1440) == (640, 480)  # 400 px, raised to the 640 floor
    assert bound.size(640, 480) == (640, 480) and bound.size(300, 200) == (300, 200)
    assert bound.size(12000, 3000) == (1280, 320)  # 2500 px, capped at the largest canvas
    assert images.Bound(scale=1.0, max_side=1280, min_side=640).size(800, 600) == (800, 600)
    assert images.Bound(scale=0.5, max_side=1280, min_side=0).size(800, 600) == (400, 300)


def test_jpeg_working_copy_is_decoded_reduced_and_the_full_resolution_lazily(monkeypatch):
    data = _jpeg(_smooth(1500, 2000))
    calls = []
    real = simplejpeg.decode_jpeg

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out.shape)
        return out

    monkeypatch.setattr(simplejpeg, "decode_jpeg", spy)
    loaded = images.load(data, bound=images.Bound(scale=0.25, min_side=0))
    assert calls == [(375, 500, 3)], "one decode, at the 1/4 DCT scale"
    assert loaded.work.shape == (375, 500, 3) and loaded.size == (2000, 1500)
    assert loaded.work_scale() == (4.0, 4.0)
    assert loaded.image.shape == (1500, 2000, 3) and len(calls) == 2
    loaded.release()
    assert loaded.image.shape == (1500, 2000, 3) and len(calls) == 3  # decoded again
    # a copy between DCT scales: the next larger n/8 scale, then resized to the bound
    odd = images.load(data, bound=images.Bound(scale=0.3, min_side=0))
    assert odd.work.shape == (450, 600, 3) and calls[-1] == (563, 750, 3)  # 3/8


def test_faces_are_mapped_to_photo_pixels_and_cut_with_the_detail_they_need(bundle,
                                                                           monkeypatch):
    full = photo(0, 1500, 2000, seed=1)
    seen = []

    class InWorkingPixels:
        """One face at the same place of whatever copy it is given (its centre third)."""

        name = "mtcnn"

        def detect(self, batch):
            seen.extend(im.shape for im in batch)
            return [[face(im.shape[1] / 3, im.shape[0] / 3, im.shape[1] / 2,
                          im.shape[1] / 2 - im.shape[1] / 3 + im.shape[0] / 3)]
                    for im in batch]

    cut = []
    monkeypatch.setattr("agr_jax.inference.predictor.face_crop",
                        lambda image, f, size, frame=None: cut.append((image.shape, frame))
                        or np.zeros((size, size, 3), np.uint8))
    p = fast_predictor(bundle, detector=InWorkingPixels(), min_face=40)
    rec = p([_jpeg(full)], detect="mtcnn")[0]
    # min_face 40 with MTCNN's 20 px: half scale, 1000 x 750 (no canvases to round up to)
    assert seen == [(750, 1000, 3)]
    work_face = face(1000 / 3, 750 / 3, 500, 500 - 1000 / 3 + 250)
    # a 1000 px face shrinks to the tiny model's crop more than MAX_SUPERSAMPLE times over:
    # it is cut from the largest DCT reduction whose pixels that warp still reads
    factor = align.reduction([align.landmark_matrix(to_full(work_face, 2, 2).landmarks,
                                                    bundle.image_size)])
    assert factor > 1
    assert cut[0][0] == (-(-1500 // factor), -(-2000 // factor), 3)
    np.testing.assert_allclose(cut[0][1], [[1 / factor, 0, 0.5 / factor - 0.5],
                                           [0, 1 / factor, 0.5 / factor - 0.5]])
    np.testing.assert_allclose(rec["box"], (work_face.box + 0.5) * 2 - 0.5, atol=0.06)
    np.testing.assert_allclose(rec["landmarks"], (work_face.landmarks + 0.5) * 2 - 0.5,
                               atol=0.06)
    assert rec["age"] is not None
    assert p.describe_finding("mtcnn") == (
        "faces from 40 px asked, found from 40 px (mtcnn needs 20 px in its working copy, "
        "long side 960-1280 px; smaller faces abstain)")


def test_a_photo_without_faces_never_decodes_its_full_resolution(bundle, monkeypatch):
    class NoFaces:
        name = "mtcnn"

        def detect(self, batch):
            return [[] for _ in batch]

    decoded = []
    real = simplejpeg.decode_jpeg
    monkeypatch.setattr(simplejpeg, "decode_jpeg",
                        lambda *a, **k: decoded.append(k.get("min_width", 0)) or real(*a, **k))
    p = fast_predictor(bundle, detector=NoFaces())  # 2000 px -> 960
    assert p([_jpeg(_smooth(1500, 2000))], detect="mtcnn")[0]["reason"] == "no face found"
    assert len(decoded) == 1 and decoded[0] > 0, "only the reduced working copy"


@pytest.mark.parametrize("orient", [1, 3, 6, 8])
def test_crops_from_the_stored_or_reduced_decode_equal_the_upright_full_resolution(orient):
    """A phone photo is cut as stored (no 12 MP rotation) and, for large faces, from a DCT
    reduced decode: the crops are the upright full-resolution ones."""
    upright = _smooth(960, 1280)
    stored = {1: upright, 3: upright[::-1, ::-1], 6: np.rot90(upright, 1),
              8: np.rot90(upright, -1)}[orient]
    data = jpeg_with_orientation(np.ascontiguousarray(stored), orient)
    loaded = images.load(data, bound=images.Bound(scale=0.5, min_side=0))
    assert loaded.size == (1280, 960)
    reference = images.load(data).image  # decoded and turned upright
    marks = np.array([[500, 400], [700, 390], [600, 520], [520, 640], [690, 630]], np.float64)
    # a 200 px eye distance: the face spans ~2.3x a 112 px crop, ~6x a 40 px one
    for size, expect in ((256, 1), (112, 2), (40, 4)):
        factor = align.reduction([align.landmark_matrix(marks, size)])
        assert factor == expect
        pixels, frame = loaded.crop_source(factor)
        assert pixels.shape[:2] == tuple(-(-n // factor) for n in stored.shape[:2])
        assert (frame is None) == (orient == 1 and factor == 1)
        ours = align.align_face(pixels, marks, size, frame).astype(int)
        full = align.align_face(reference, marks, size).astype(int)
        diff = np.abs(ours - full)
        if factor == 1:
            assert diff.max() <= 1
        else:  # a pre-filtered decode, not the full one: close, not equal
            assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())


def test_to_full_and_the_crop_match_aligning_on_the_full_photo():
    full = photo(0, 600, 800, seed=2)
    work_face = face(100, 80, 160, 140)
    f = to_full(work_face, 2.0, 2.0)
    assert f.box.tolist() == pytest.approx([200.5, 160.5, 320.5, 280.5])
    assert to_full(work_face, 1, 1) is work_face
    assert to_full(Face(work_face.box, 0.9, None), 2, 2).landmarks is None
    np.testing.assert_array_equal(face_crop(full, f, 32),
                                  align.align_face(full, f.landmarks, 32))


def test_default_detector_is_offered_everywhere():
    assert DEFAULT_DETECTOR in DETECTORS and "none" in DETECTORS


def test_mixed_sizes_compile_a_bounded_set_of_detector_programs(bundle):
    """~12 photos of random sizes (phone photos among them), one call each as a folder
    run makes them: at most `programs()` detector programs, however many sizes."""
    from agr_jax.inference import yunet  # first-party, weights shipped: an error must fail

    detector = yunet.YuNetDetector(runtime="jax")  # the runtime that compiles
    p = fast_predictor(bundle, detector=detector)
    rng = np.random.default_rng(0)
    sizes = [(int(rng.integers(120, 4200)), int(rng.integers(120, 3200))) for _ in range(10)]
    sizes += [(4000, 3000), (3000, 4000)]
    for w, h in sizes:
        records = p([_jpeg(_smooth(h, w))], detect="yunet")
        assert len(records) >= 1
    assert 0 < detector.compiles <= detector.programs()
    assert p.traces <= len(p.buckets)
