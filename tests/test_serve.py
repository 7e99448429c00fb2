"""The HTTP service against the ASGI app (starlette's TestClient, httpx for concurrency):
records, multipart, every limit and bad input answered with its status and reason while
the server keeps serving, concurrent requests batched into shared device calls, metrics."""

import asyncio
import io
import json
import re
import time

import httpx
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
from starlette.testclient import TestClient

from agr_jax.inference.predictor import RECORD_FIELDS
from agr_jax.serve.app import Limits, create_app

FIVE_FACES = [face(10 + 28 * k, 20, 34 + 28 * k, 44) for k in range(5)]


@pytest.fixture(scope="module")
def predictor():
    with pytest.MonkeyPatch.context() as mp:
        install_fake_align(mp)
        # Red 0: no face; 1: one face; 2: five faces.
        script = [[], [face(20, 20, 80, 80)], FIVE_FACES]
        yield fast_predictor(tiny_bundle(CALIBRATION), buckets=(1, 8),
                        detector=ScriptedDetector(script))


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, detect="mtcnn",
                     limits=Limits(max_bytes=200_000, max_faces=3, timeout_s=5.0,
                                   max_batch=8, max_wait_ms=5))
    with TestClient(app) as c:
        yield c


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def post(client, data: bytes, query: str = "", **kw):
    return client.post(f"/v1/predict{query}", content=data,
                       headers={"content-type": "image/png"}, **kw)


def test_predict_raw_and_multipart_give_the_predictor_records(client, predictor):
    image = photo(1)
    raw = post(client, png(image))
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["faces"] == 1 and body["capped"] is None and body["detect"] == "mtcnn"
    assert body["image"] == {"width": 160, "height": 120}
    (record,) = body["records"]
    assert set(RECORD_FIELDS) <= set(record) and record["path"] == "upload"
    assert record["box"] == [20, 20, 80, 80] and record["gender"] in ("male", "female")
    want = predictor([image])[0]
    assert record["age"] == want["age"] and record["race_prob"] == want["race_prob"]
    form = client.post("/v1/predict", files={"image": ("me.png", png(image), "image/png")})
    assert form.status_code == 200, form.text
    assert form.json()["records"][0]["path"] == "me.png"
    assert form.json()["records"][0]["age"] == record["age"]


def test_crops_without_detection_and_a_photo_without_faces(client):
    crop = np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    answer = post(client, jpeg(crop), "?detect=none").json()
    assert answer["detect"] == "none" and answer["faces"] == 1
    assert answer["records"][0]["box"] == [0, 0, 40, 40]
    empty = post(client, png(photo(0))).json()
    assert empty["faces"] == 0 and empty["records"][0]["reason"] == "no face found"


def test_more_faces_than_the_cap_are_capped_and_said(client):
    answer = post(client, png(photo(2))).json()
    assert answer["faces"] == 3 and len(answer["records"]) == 3
    assert answer["capped"] == "found 5 faces; returned the first 3 (max_faces=3)"
    assert [r["face"] for r in answer["records"]] == [0, 1, 2]


def test_bad_requests_get_a_status_and_reason_and_the_server_keeps_serving(client):
    good = png(photo(1))
    truncated = jpeg(photo(1))[:300]
    cases = [
        (b"", "", 400, "empty body"),
        (b"this is not an image", "", 400, "not an image"),
        (truncated, "", 400, "truncated or corrupt"),
        (good, "?detect=yolo", 400, "detect: expected one of"),
        (b"\0" * 200_001, "", 413, "over the limit of 200000 bytes"),
    ]
    for data, query, status, reason in cases:
        answer = post(client, data, query)
        assert answer.status_code == status, (reason, answer.text)
        assert reason in answer.json()["error"]
        assert post(client, good).status_code == 200  # still serving
    form = b'--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--XX--\r\n'
    multipart_without_file = client.post(
        "/v1/predict", content=form, headers={"content-type": "multipart/form-data; boundary=XX"})
    assert multipart_without_file.status_code == 400
    assert "without a file part" in multipart_without_file.json()["error"]
    # A chunked body (no Content-Length) over the cap is cut off while it streams.
    chunks = iter([b"\0" * 150_000, b"\0" * 150_000])
    streamed = client.post("/v1/predict", content=chunks)
    assert streamed.status_code == 413
    assert post(client, good).status_code == 200


def test_unavailable_detector_is_a_clear_400(predictor):
    def no_detector(name):
        raise ModuleNotFoundError(f"no module for {name}")

    slow = fast_predictor(predictor.bundle, buckets=(1,))
    slow.detector = no_detector
    with TestClient(create_app(slow, detect="haar")) as c:
        # Found at start-up (the warm-up tries the default detector), said by /healthz.
        assert "no module for haar" in c.get("/healthz").json()["unavailable"]["haar"]
        answer = post(c, png(photo(1)))
        assert answer.status_code == 400
        assert "detector 'haar' is not available" in answer.json()["error"]
        assert "no module for haar" in answer.json()["error"]
        assert post(c, jpeg(photo(1)), "?detect=none").status_code == 200


def test_a_slow_request_times_out_and_the_next_one_is_answered(predictor):
    slow = fast_predictor(predictor.bundle, buckets=(1,), detector=predictor.detector("mtcnn"))
    original = slow.predict_loaded
    delay = {"s": 1.5}

    def sleepy(loaded, detect):
        time.sleep(delay["s"])
        return original(loaded, detect)

    slow.predict_loaded = sleepy
    with TestClient(create_app(slow, limits=Limits(timeout_s=0.5))) as c:
        answer = post(c, png(photo(1)))
        assert answer.status_code == 504 and "request timeout of 0.5 s" in answer.json()["error"]
        delay["s"] = 0.0
        time.sleep(1.2)  # the timed-out call finishes in the background
        assert post(c, png(photo(1))).status_code == 200
        assert 'agr_requests_total{status="504"} 1' in c.get("/metrics").text


def test_a_model_failure_is_a_500_with_the_reason_and_the_next_request_works(predictor):
    broken = fast_predictor(predictor.bundle, buckets=(1,), detector=predictor.detector("mtcnn"))
    original, fail = broken.predict_loaded, {"now": True}

    def flaky(loaded, detect):
        if fail["now"]:
            raise FloatingPointError("NaN in the forward pass")
        return original(loaded, detect)

    broken.predict_loaded = flaky
    with TestClient(create_app(broken, warmup=False)) as c:
        answer = post(c, png(photo(1)))
        assert answer.status_code == 500
        assert answer.json()["error"] == ("prediction failed: FloatingPointError: NaN in the "
                                          "forward pass")
        fail["now"] = False
        assert post(c, png(photo(1))).status_code == 200


def test_concurrent_requests_share_device_calls(predictor):
    app = create_app(predictor, limits=Limits(max_batch=8, max_wait_ms=200))
    service = app.state.service
    images = [png(photo(1, seed=k)) for k in range(16)]

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await asyncio.gather(*[
                    c.post("/v1/predict", content=b, headers={"content-type": "image/png"})
                    for b in images])

    answers = asyncio.run(run())
    assert [a.status_code for a in answers] == [200] * 16
    calls = service.metrics.batch_images
    assert calls.sum == 16 and calls.count < 16  # fewer device calls than requests
    assert calls.count >= 2  # max_batch=8: at most 8 images per call


def test_healthz_metrics_and_page(client):
    post(client, png(photo(1)))
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["image_size"] == SIZE
    assert health["limits"]["max_faces"] == 3
    assert health["model"]["compute_dtype"] == "float32"  # the tiny bundle's
    text = client.get("/metrics").text
    assert re.search(r'^agr_requests_total\{status="200"\} [1-9]\d*$', text, re.M)
    assert re.search(r"^agr_faces_total [1-9]\d*$", text, re.M)
    count = int(re.search(r"^agr_request_seconds_count (\d+)$", text, re.M).group(1))
    inf = int(re.search(r'^agr_request_seconds_bucket\{le="\+Inf"\} (\d+)$', text, re.M).group(1))
    assert count == inf >= 1
    assert re.search(r'^agr_batch_images_bucket\{le="1"\} [1-9]', text, re.M)
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in page.text
    assert "/v1/predict" in page.text and json.dumps("window.agr")[1:-1] in page.text


def test_entry_point_parser_is_light_and_agrees_with_the_predictor():
    from agr_jax.inference.predictor import DETECTORS
    from agr_jax.serve import limits
    from agr_jax.serve.__main__ import build_parser

    assert limits.DETECTORS == DETECTORS
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.detector) == ("127.0.0.1", 8000, "mtcnn")
