"""The benchmark's `predict` section on a tiny model (smoke: values are not judged)."""

import io

import numpy as np
import pytest
from inference_fakes import (
    ScriptedDetector,
    face,
    fast_predictor,
    install_fake_align,
    photo,
    tiny_bundle,
)
from PIL import Image

from agr_jax.bench import predict as predict_bench


def _jpegs(n):
    out = []
    for k in range(n):
        buf = io.BytesIO()
        Image.fromarray(photo(k, 48, 48, seed=k)).save(buf, "JPEG")
        out.append(buf.getvalue())
    return out


def test_predict_section_reports_views_labels_detection_and_skips(monkeypatch):
    bundle = tiny_bundle()
    install_fake_align(monkeypatch)
    jpegs = _jpegs(10)
    labels = {"age": np.full(10, 30.0), "gender": np.zeros(10, int),
              "race": np.array([0, 1, 2, 3, 4, -1, 0, 1, 2, 3])}
    detector = ScriptedDetector([[face(20, 20, 140, 140), face(300, 100, 420, 220)]])

    def make(views):
        return fast_predictor(bundle, views=views, detector=detector)

    out = predict_bench.run(make, jpegs, labels, min_seconds=0.01, photos=3,
                            target_crops_s=1e9)
    assert out["views_1"]["crops_s"] > 0 and out["views_2"]["crops_s"] > 0
    assert 0 <= out["views_1"]["gender_acc"] <= 1 and out["views_1"]["age_mae"] >= 0
    assert out["detect"]["faces_found_per_photo"] == 2.0
    assert out["detect"]["faces_pasted_per_photo"] == predict_bench.FACES_PER_PHOTO
    assert "peer" in out["skipped"]
    photos = predict_bench.group_photos(jpegs, 2)
    assert photos[0].shape == (480, 640, 3)
    text = "\n".join(predict_bench.format_lines(out))
    assert "crops/s" in text and "photos/s" in text and "skipped peer" in text
    cost = out["cost"]
    assert cost["decode_ms"] > 0 and cost["forward_ms"] > 0 and cost["rest_ms"] >= 0
    # a target faster than the host's share alone cannot be met by any forward
    assert cost["forward_needed_crops_s"] == float("inf")
    assert "would need the forward to take no time" in text


def test_the_cost_breakdown_says_what_forward_a_reachable_target_needs(monkeypatch):
    bundle = tiny_bundle()
    predictor = fast_predictor(bundle, views=1)
    rates = iter([1000.0, 500.0])  # decode + resize 1 ms per crop, then the forward 2 ms
    monkeypatch.setattr(predict_bench, "items_per_s", lambda fn, seconds: next(rates))
    # 200 crops/s end to end = 5 ms per crop: 1 decode + 2 forward + 2 the rest. A target of
    # 250 crops/s (4 ms) leaves the forward 4 - 1 - 2 = 1 ms: 1,000 crops/s, twice its rate.
    cost = predict_bench.cost_per_crop(predictor, _jpegs(2), 200.0, 0.01, target_crops_s=250.0)
    assert cost["decode_ms"] == pytest.approx(1.0) and cost["forward_ms"] == pytest.approx(2.0)
    assert cost["rest_ms"] == pytest.approx(2.0)
    assert cost["forward_needed_crops_s"] == pytest.approx(1000.0)
    text = "\n".join(predict_bench.format_lines({"views_1": {"crops_s": 200.0},
                                                  "views_2": {"crops_s": 100.0},
                                                  "views_2_cost": 2.0, "cost": cost,
                                                  "skipped": {}}))
    assert "250 crops/s would need the forward at 1,000 crops/s (2.0x this model's)" in text


def test_crops_only_times_crops_labels_and_cost_and_skips_the_rest(monkeypatch):
    bundle = tiny_bundle()
    jpegs = _jpegs(6)
    labels = {"age": np.full(6, 30.0), "gender": np.zeros(6, int), "race": np.zeros(6, int)}

    def no_photos(*args, **kwargs):
        raise AssertionError("crops_only: no group photos, detection or peer")

    monkeypatch.setattr(predict_bench, "group_photos", no_photos)
    out = predict_bench.run(lambda views: fast_predictor(bundle, views=views), jpegs, labels,
                            min_seconds=0.01, peer_module=object(), target_crops_s=1e9,
                            crops_only=True)
    assert out["views_1"]["crops_s"] > 0 and out["views_2"]["crops_s"] > 0
    assert "gender_acc" in out["views_2"] and out["cost"]["forward_ms"] > 0
    assert out["model"]["image_size"] == bundle.image_size
    assert not {"onnx", "detect", "peer"} & set(out)
    assert set(out["skipped"]) == {"onnx", "detect", "peer"}
    text = "\n".join(predict_bench.format_lines(out, "predict_fast"))
    assert text.startswith("predict_fast ") and "skipped onnx: crops_only" in text
