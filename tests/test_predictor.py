"""Predictor: records, input kinds, fixed buckets (no recompiles), detection contract,
abstention, bad input."""

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from inference_fakes import (
    CALIBRATION,
    SIZE,
    ScriptedDetector,
    face,
    fast_predictor,
    install_fake_align,
    photo,
    tiny_bundle,
)
from PIL import Image

from agr_jax.inference.predictor import RECORD_FIELDS, plan_batches


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(CALIBRATION)


@pytest.fixture(scope="module")
def predictor(bundle):
    return fast_predictor(bundle, buckets=(1, 8, 32))


def _crops(n, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _jpeg(array, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_records_fields_labels_calibration(predictor):
    records = predictor(list(_crops(3)), detect="none")
    assert len(records) == 3
    for k, r in enumerate(records):
        assert set(RECORD_FIELDS) <= set(r) and r["path"] == f"<array #{k}>"
        assert r["face"] == 0 and r["box"] == [0, 0, SIZE, SIZE] and r["score"] == 1.0
        assert r["gender"] in ("male", "female") and r["race"] in r["race_prob"]
        assert r["gender"] == max(r["gender_prob"], key=r["gender_prob"].get)
        assert sum(r["gender_prob"].values()) == pytest.approx(1, abs=1e-3)
        lo, hi = r["age_interval"]
        assert lo <= r["age"] <= hi and r["abstained"] is False and r["reason"] is None
        # The fake calibration's offsets, by predicted-age group (edge at 30 years), the
        # bounds clipped to [0, max_age] (records round to 0.1 year).
        low, high = (-3, 4) if r["age"] < 30 else (-10, 12)
        want = (max(r["age"] + low, 0.0), min(r["age"] + high, predictor.bundle.task_spec.max_age))
        assert (lo, hi) == pytest.approx(want, abs=0.11)


def test_temperature_applied(bundle):
    raw = fast_predictor(tiny_bundle(None)).predict_crops(_crops(4))
    cal = fast_predictor(bundle).predict_crops(_crops(4))
    np.testing.assert_allclose(raw["age"], cal["age"], rtol=1e-5)
    assert np.isnan(raw["age_interval"]).all()
    # T = 2 for gender flattens, T = 0.5 for race sharpens.
    assert (np.abs(cal["gender_prob"] - 0.5).max(-1) <= np.abs(raw["gender_prob"] - 0.5).max(-1)
            + 1e-6).all()
    assert (cal["race_prob"].max(-1) >= raw["race_prob"].max(-1) - 1e-6).all()


def test_fixed_buckets_compile_once_each(bundle):
    p = fast_predictor(bundle, buckets=(1, 8, 32))
    full = p.predict_crops(_crops(45))
    assert p.traces == 2  # 32 + 8 + 8 (13 padded to 32 would cost more): two programs
    for n in (1, 3, 7, 8, 20, 31, 33):
        out = p.predict_crops(_crops(45)[:n])
        np.testing.assert_allclose(out["age"], full["age"][:n], rtol=1e-4, atol=1e-3)
    assert p.traces == 3, "one trace per bucket size (1, 8, 32), none per batch size"


def test_batches_cover_the_crops_with_the_least_padding():
    assert plan_batches(0) == [] and plan_batches(1) == [1] and plan_batches(4) == [4]
    assert plan_batches(13) == [16] and plan_batches(24) == [16, 8]
    assert plan_batches(109) == [32, 32, 32, 16] and plan_batches(300) == [128, 128, 32, 16]
    for n in range(1, 300):
        plan = plan_batches(n)
        assert sum(plan) >= n and sum(plan) - n < 16 and plan == sorted(plan, reverse=True)


def test_every_input_kind_gives_the_same_prediction(predictor, tmp_path):
    img = _crops(1, seed=3)[0]
    png = io.BytesIO()
    Image.fromarray(img).save(png, "PNG")
    path = tmp_path / "face.png"
    path.write_bytes(png.getvalue())
    records = predictor([str(path), path, png.getvalue(), Image.fromarray(img), img],
                        detect="none")
    ages = {r["age"] for r in records}
    assert len(ages) == 1, records
    assert [r["path"] for r in records][:3] == [str(path), str(path), "<bytes #2>"]
    single = predictor(img, detect="none")
    assert len(single) == 1 and single[0]["age"] in ages


def _png_header_only(width, height) -> bytes:
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("detect", ["none", "mtcnn"])
def test_bad_inputs_each_get_a_reason_and_the_rest_run(bundle, tmp_path, monkeypatch, detect):
    install_fake_align(monkeypatch)
    p = fast_predictor(bundle, detector=ScriptedDetector([[face(10, 10, 90, 90)]]))
    good = photo(0, 96, 96)
    files = {
        "missing.jpg": None, "empty.jpg": b"", "text.jpg": b"not an image at all",
        "truncated.jpg": _jpeg(good)[:400], "huge.png": _png_header_only(10_000, 6_000),
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    gray = np.asarray(Image.fromarray(good).convert("L"))
    buf = {}
    for mode, fmt in (("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG")):
        b = io.BytesIO()
        Image.fromarray(good).convert(mode).save(b, fmt)
        buf[mode] = b.getvalue()
    inputs = [str(tmp_path / n) for n in files] + [_jpeg(good), buf["L"], buf["CMYK"],
                                                   buf["RGBA"], buf["P"], gray,
                                                   np.zeros((4, 4, 3), np.float32)]
    records = p(inputs, detect=detect)
    reasons = [r["reason"] for r in records]
    assert reasons[:5] == [
        "error: file not found", "error: empty file",
        "error: not an image (format not recognised)",
        reasons[3], "error: too large: 10000x6000 = 60 MP (the limit is 50 MP)"]
    assert reasons[3].startswith("error: truncated"), reasons[3]
    assert reasons[5:10] == [None] * 5 and records[-2]["reason"] is None
    assert [r["note"] for r in records[6:12]] == [
        "converted from grayscale to RGB", "converted from CMYK to RGB",
        "converted from alpha to RGB", "converted from palette to RGB",
        "converted from grayscale to RGB", None]
    assert records[-1]["reason"].startswith("error: numpy array of dtype float32")
    assert all(r["age"] is not None for r in records[5:11])


def test_decoding_in_threads_gives_the_same_records_in_order(bundle):
    inputs = [_jpeg(photo(k, 64, 64, seed=k)) for k in range(11)]
    inputs.insert(4, b"not an image at all")
    serial = fast_predictor(bundle, decode_threads=1)(inputs, detect="none")
    threaded_predictor = fast_predictor(bundle, decode_threads=3)
    threaded = threaded_predictor(inputs, detect="none")
    assert threaded_predictor._pool is not None  # the call did go through the threads
    assert threaded == serial
    assert serial[4]["reason"].startswith("error: not an image")


def test_huge_input_refused_from_the_header_without_decoding(bundle, monkeypatch):
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    records = fast_predictor(bundle)([_png_header_only(20_000, 20_000)], detect="none")
    assert records[0]["reason"].startswith("error: too large: 20000x20000 = 400 MP")
    assert not decoded


def test_detection_faces_no_face_and_abstention(bundle, monkeypatch):
    calls = install_fake_align(monkeypatch)
    script = [
        [face(10, 10, 70, 70), face(80, 20, 150, 90, landmarks=False)],  # red 0: two faces
        [],  # red 1: no face
        [face(10, 10, 70, 70, score=0.5), face(100, 100, 108, 108)],  # red 2: weak, tiny
    ]
    detector = ScriptedDetector(script)
    p = fast_predictor(bundle, detector=detector, min_score=0.8, min_face=20)
    records = p([photo(0), photo(1), photo(2)], detect="mtcnn")
    assert detector.calls == 1, "all images of a call detected in one batch"
    assert [(r["path"], r["face"]) for r in records] == [
        ("<array #0>", 0), ("<array #0>", 1), ("<array #1>", None), ("<array #2>", 0),
        ("<array #2>", 1)]
    two = records[:2]
    assert all(r["age"] is not None and not r["abstained"] for r in two)
    assert two[0]["landmarks"] is not None and len(two[0]["landmarks"]) == 5
    assert two[1]["landmarks"] is None and two[1]["box"] == [80, 20, 150, 90]
    assert calls == {"align_face": 1, "crop_box": 2}  # align_face crops through crop_box
    assert records[2]["reason"] == "no face found" and records[2]["age"] is None
    weak, tiny = records[3:]
    assert weak["abstained"] and weak["reason"] == (
        "detection score 0.50 below min_score 0.80") and weak["age"] is None
    assert tiny["abstained"] and tiny["reason"] == "face 8 px, below min_face 20 px"


def test_flip_views_average_the_mirror(bundle):
    crops = _crops(2, seed=5)
    one, two = fast_predictor(bundle), fast_predictor(bundle, views=2)
    mirrored = one.predict_crops(crops[:, :, ::-1])
    want = (one.predict_crops(crops)["age"] + mirrored["age"]) / 2
    np.testing.assert_allclose(two.predict_crops(crops)["age"], want, rtol=1e-4)
    with pytest.raises(ValueError, match="views"):
        fast_predictor(bundle, views=3)


def test_import_is_light_and_inference_does_not_import_the_training_loop():
    code = ("import sys, agr_jax; assert 'jax' not in sys.modules, 'import agr_jax pulled jax'\n"
            "from agr_jax import Predictor\n"
            "import agr_jax.inference.load, agr_jax.inference.release\n"
            "assert 'agr_jax.train.loop' not in sys.modules, 'inference imported train.loop'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_root()))


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
