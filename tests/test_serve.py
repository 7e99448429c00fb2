"""The HTTP service against the ASGI app (starlette's TestClient, httpx for concurrency, a
live uvicorn for slow clients).

Plumbing (records, multipart, limits, lanes, queues, timeouts, metrics) runs with a
"scripted" detector whose boxes are chosen by the test; what detection must deliver (boxes
from a real detector, nothing compiled after ready, a phone photo answered like a small one)
runs the real YuNet detector on a real face (matplotlib's sample portrait)."""

import asyncio
import io
import json
import socket
import time
from urllib.parse import urlparse

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
    two_portraits,
)
from live_server import live_server
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from agr_jax.inference import images
from agr_jax.inference.predictor import RECORD_FIELDS
from agr_jax.serve.app import Limits, create_app
from agr_jax.serve.lanes import Busy, Lane

FIVE_FACES = [face(10 + 28 * k, 20, 34 + 28 * k, 44) for k in range(5)]


@pytest.fixture(scope="module")
def fake_align():
    with pytest.MonkeyPatch.context() as mp:
        install_fake_align(mp)
        yield


@pytest.fixture(scope="module")
def predictor(fake_align):
    # Red 0: no face; 1: one face; 2: five faces.
    script = [[], [face(20, 20, 80, 80)], FIVE_FACES]
    return fast_predictor(tiny_bundle(CALIBRATION), buckets=(1, 8),
                          detector=ScriptedDetector(script, name="scripted"))


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, detect="scripted",
                     limits=Limits(max_bytes=200_000, max_faces=3, timeout_s=5.0,
                                   max_batch=8, max_wait_ms=5))
    with TestClient(app) as c:
        yield c


def scripted_copy(predictor, **kwargs):
    """A fresh predictor sharing the module's bundle and scripted detector."""
    return fast_predictor(predictor.bundle, buckets=(1,),
                          detector=predictor.detector("scripted"), **kwargs)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def post(client, data: bytes, query: str = "", **kw):
    return client.post(f"/v1/predict{query}", content=data,
                       headers={"content-type": "image/png"}, **kw)


def metric(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from Prometheus text, parsed by prometheus_client's own parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return None


def test_predict_raw_and_multipart_give_the_predictor_records(client, predictor):
    image = photo(1)
    raw = post(client, png(image))
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["faces"] == 1 and body["capped"] is None and body["detect"] == "scripted"
    assert body["image"] == {"width": 160, "height": 120}
    (record,) = body["records"]
    assert set(RECORD_FIELDS) <= set(record) and record["path"] == "upload"
    assert record["box"] == [20, 20, 80, 80] and record["gender"] in ("male", "female")
    want = predictor.predict_loaded([images.load(image)], "scripted")[0]
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
        (good, "?detect=haar", 400, "detect='haar' is not served here (served: scripted, none"),
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


def test_unavailable_detector_is_a_clear_400_that_leaks_no_exception_text(predictor, caplog):
    def no_detector(name):
        raise ModuleNotFoundError(f"no module named secret_{name}_path")

    broken = scripted_copy(predictor)
    broken.detector = no_detector
    with TestClient(create_app(broken, detect="haar")) as c:
        # Found at start-up (the warm-up builds the served detectors), said by /healthz
        # without the exception's text, which goes to the log.
        health = c.get("/healthz")
        assert health.status_code == 200 and "haar" in health.json()["unavailable"]
        assert "secret" not in health.text and health.json()["detectors"] == ["none"]
        assert "no module named secret_haar_path" in caplog.text
        answer = post(c, png(photo(1)))
        assert answer.status_code == 400
        assert "detector 'haar' is not available" in answer.json()["error"]
        assert "secret" not in answer.text
        assert post(c, jpeg(photo(1)), "?detect=none").status_code == 200


def test_healthz_is_503_until_the_warm_up_is_done(predictor):
    app = create_app(scripted_copy(predictor), detect="scripted")
    early = TestClient(app).get("/healthz")  # no `with`: the lifespan (warm-up) never ran
    assert early.status_code == 503 and early.json() == {"status": "starting", "ready": False}
    with TestClient(app) as c:
        assert c.get("/healthz").json()["ready"] is True


def test_a_slow_request_times_out_and_the_next_one_is_answered(predictor):
    slow = scripted_copy(predictor)
    original = slow.predict_loaded
    delay = {"s": 0.0}  # none while it warms up

    def sleepy(loaded, detect):
        time.sleep(delay["s"])
        return original(loaded, detect)

    slow.predict_loaded = sleepy
    with TestClient(create_app(slow, detect="scripted", limits=Limits(timeout_s=0.5))) as c:
        delay["s"] = 1.5
        answer = post(c, png(photo(1)))
        assert answer.status_code == 504 and "request timeout of 0.5 s" in answer.json()["error"]
        delay["s"] = 0.0
        time.sleep(1.2)  # the timed-out call finishes in the background
        assert post(c, png(photo(1))).status_code == 200
        assert metric(c.get("/metrics").text, "agr_requests_total", status="504") == 1


def test_a_model_failure_is_a_500_without_the_exception_text(predictor, caplog):
    broken = scripted_copy(predictor)
    original, fail = broken.predict_loaded, {"now": True}

    def flaky(loaded, detect):
        if fail["now"]:
            raise FloatingPointError("NaN in the forward pass")
        return original(loaded, detect)

    broken.predict_loaded = flaky
    with TestClient(create_app(broken, detect="scripted", warmup=False)) as c:
        answer = post(c, png(photo(1)))
        assert answer.status_code == 500
        assert "internal error" in answer.json()["error"] and "NaN" not in answer.text
        assert "NaN in the forward pass" in caplog.text  # logged for the operator
        fail["now"] = False
        assert post(c, png(photo(1))).status_code == 200


def slow_photos(predictor, seconds: float):
    """A predictor whose detector lane takes `seconds` per call once the service is ready
    (not during its warm-up); crops stay fast."""
    slow = scripted_copy(predictor)
    original, service = slow.predict_loaded, {}

    def sleepy(loaded, detect):
        if detect != "none" and service["app"].state.service.ready:
            time.sleep(seconds)
        return original(loaded, detect)

    slow.predict_loaded = sleepy
    return slow, service


async def concurrently(app, *requests: tuple[bytes, str]) -> list[tuple[httpx.Response, float]]:
    """Sends the requests at once through the app (its warm-up done first); (answer,
    seconds) each, in order."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            async def one(data: bytes, query: str):
                start = time.perf_counter()
                answer = await c.post(f"/v1/predict{query}", content=data,
                                      headers={"content-type": "image/png"})
                return answer, time.perf_counter() - start

            return await asyncio.gather(*[one(d, q) for d, q in requests])


def test_a_full_lane_answers_503_with_retry_after_and_recovers(predictor):
    slow, hook = slow_photos(predictor, 0.6)
    app = hook["app"] = create_app(slow, detect="scripted", limits=Limits(
        max_pending=1, max_batch_photos=1, photo_workers=1))
    answers = asyncio.run(concurrently(app, *[(png(photo(1, seed=k)), "") for k in range(4)]))
    statuses = sorted(a.status_code for a, _ in answers)
    assert statuses == [200, 503, 503, 503], [a.text for a, _ in answers]
    for busy in (a for a, _ in answers if a.status_code == 503):
        assert int(busy.headers["retry-after"]) >= 1
        assert "'scripted' lane is busy" in busy.json()["error"]
    # The crop lane has its own bound: a crop is admitted while the photo lane is full.
    more = asyncio.run(concurrently(app, (png(photo(1)), ""), (png(photo(1, seed=9)), ""),
                                    (jpeg(photo(1)), "?detect=none")))
    assert [a.status_code for a, _ in more][2] == 200
    assert app.state.service.metrics.value("agr_rejected_total", lane="scripted",
                                           reason="full") >= 3


def test_admission_refuses_work_that_could_not_be_answered_in_time():
    lane = Lane("photos", lambda batch: batch, max_batch=2, max_wait_s=0, max_pending=100,
                decode_threads=1, timeout_s=1.0, workers=1)
    lane.batch_seconds = 0.3  # as measured: one call of up to 2 photos takes 0.3 s
    held = [lane.admit() for _ in range(6)]
    for place in held:  # 6 requests = 3 calls = 0.9 s of work: each can still be answered
        place.__enter__()
    with pytest.raises(Busy, match="'photos' lane is busy") as refused, lane.admit():
        pass  # the 7th would wait 4 calls = 1.2 s > the 1 s timeout
    assert refused.value.retry_after == 1 and lane.pending == 6
    held[0].__exit__(None, None, None)
    with lane.admit():  # one answered: room again
        assert lane.pending == 6


def test_a_crop_is_not_queued_behind_a_slow_photo(predictor):
    slow, hook = slow_photos(predictor, 1.5)
    app = hook["app"] = create_app(slow, detect="scripted")
    (photo_answer, photo_s), (crop_answer, crop_s) = asyncio.run(concurrently(
        app, (png(photo(1)), ""), (jpeg(photo(1)), "?detect=none")))
    assert photo_answer.status_code == crop_answer.status_code == 200
    assert photo_s >= 1.5 and crop_s < 1.0, (photo_s, crop_s)


def test_concurrent_requests_share_device_calls(predictor):
    app = create_app(predictor, detect="scripted", warmup=False,
                     limits=Limits(max_batch_photos=8, max_wait_ms=200, photo_workers=1))
    answers = asyncio.run(concurrently(app, *[(png(photo(1, seed=k)), "") for k in range(16)]))
    assert [a.status_code for a, _ in answers] == [200] * 16
    value = app.state.service.metrics.value
    assert value("agr_batch_images_sum", lane="scripted") == 16
    calls = value("agr_batch_images_count", lane="scripted")
    assert 2 <= calls < 16  # fewer device calls than requests; at most 8 images per call


def test_a_slow_client_gets_408_and_the_server_keeps_serving(predictor):
    app = create_app(scripted_copy(predictor), detect="scripted", warmup=False,
                     limits=Limits(body_timeout_s=0.5))
    with live_server(app) as url:
        address = urlparse(url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 5000\r\n\r\n" + b"\0" * 10)  # and then nothing
            start = time.perf_counter()
            head = s.recv(4096)
            waited = time.perf_counter() - start
        assert head.startswith(b"HTTP/1.1 408"), head[:200]
        assert b"not received within 0.5 s" in head and 0.3 < waited < 5
        good = httpx.post(f"{url}/v1/predict", content=png(photo(1)),
                          headers={"content-type": "image/png"}, timeout=30)
        assert good.status_code == 200


def test_compiles_after_ready_are_counted(predictor):
    # Without the warm-up the first request compiles the forward: the metric must show it.
    app = create_app(fast_predictor(predictor.bundle, buckets=(2,)), detect="none",
                     warmup=False)
    with TestClient(app) as c:
        assert metric(c.get("/metrics").text, "agr_xla_compiles_after_ready") == 0
        assert post(c, jpeg(photo(1)), "?detect=none").status_code == 200
        assert metric(c.get("/metrics").text, "agr_xla_compiles_after_ready") >= 1


def test_healthz_metrics_and_page(client):
    post(client, png(photo(1)))
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["ready"] and health["image_size"] == SIZE
    assert health["limits"]["max_faces"] == 3 and health["detectors"] == ["scripted", "none"]
    assert health["model"]["compute_dtype"] == "float32"  # the tiny bundle's
    assert set(health["lanes"]) == {"scripted", "none"}
    text = client.get("/metrics").text
    assert metric(text, "agr_requests_total", status="200") >= 1
    assert metric(text, "agr_faces_total") >= 1
    count = metric(text, "agr_request_seconds_count")
    assert count == metric(text, "agr_request_seconds_bucket", le="+Inf") >= 1
    assert metric(text, "agr_batch_images_bucket", lane="scripted", le="1.0") >= 1
    assert metric(text, "agr_xla_compiles_total") >= 1  # the warm-up compiled the buckets
    assert metric(text, "agr_traces", component="predictor") >= 1
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in page.text
    assert "/v1/predict" in page.text and json.dumps("window.agr")[1:-1] in page.text


def test_entry_point_parser_is_light_and_agrees_with_the_predictor():
    from agr_jax.inference import predictor
    from agr_jax.serve import limits
    from agr_jax.serve.__main__ import build_parser

    assert limits.DETECTORS == predictor.DETECTORS
    assert limits.DEFAULT_DETECTOR == predictor.DEFAULT_DETECTOR
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.detector) == ("127.0.0.1", 8000, "yunet")
    assert build_parser().parse_args(["--detectors", "mtcnn,haar"]).detectors == ("mtcnn",
                                                                                  "haar")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--detectors", "yolo"])


# --- the real detector ----------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    """The tiny model behind the real YuNet detector and the real alignment, warmed up.
    The detector is limited to canvases up to 320 px and batches of 1 (3 programs to
    compile instead of the service default's 60; the same code path)."""
    from agr_jax.inference.yunet import YuNetDetector

    predictor = fast_predictor(tiny_bundle(CALIBRATION), buckets=(1, 8),
                               detector=YuNetDetector(max_side=320, max_batch=1))
    app = create_app(predictor, detect="yunet", limits=Limits(max_batch_photos=1))
    with TestClient(app) as c:
        yield c, app.state.service


def test_real_detector_finds_both_faces_and_nothing_compiles_after_ready(real):
    c, service = real
    assert c.get("/healthz").json()["compiles"]["after_ready"] == 0
    small, rects = two_portraits(480, 640)
    phone = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC))
    crop = np.asarray(Image.fromarray(small[rects[0][1]:rects[0][3], rects[0][0]:rects[0][2]])
                      .resize((96, 112)))
    assert post(c, jpeg(crop), "?detect=none").status_code == 200
    answers = {}
    for name, image in (("small", small), ("phone", phone)):
        answer = post(c, jpeg(image, quality=90))
        assert answer.status_code == 200, answer.text
        answers[name] = answer.json()
        assert answers[name]["image"] == {"width": image.shape[1], "height": image.shape[0]}
        boxes = sorted((r["box"] for r in answers[name]["records"]), key=lambda b: b[0])
        assert answers[name]["faces"] == 2, answers[name]
        scale = image.shape[1] / small.shape[1]
        for (x0, y0, x1, y1), rect in zip(boxes, rects, strict=True):
            cx, cy = (x0 + x1) / 2 / scale, (y0 + y1) / 2 / scale
            assert rect[0] <= cx <= rect[2] and rect[1] <= cy <= rect[3], (name, boxes, rects)
    # The phone photo's boxes are the small photo's, scaled (detected on a working copy,
    # reported in the full photo's pixels).
    small_boxes = np.array(sorted(r["box"] for r in answers["small"]["records"]))
    phone_boxes = np.array(sorted(r["box"] for r in answers["phone"]["records"]))
    np.testing.assert_allclose(phone_boxes / 6.25, small_boxes, atol=8)
    text = c.get("/metrics").text
    assert metric(text, "agr_xla_compiles_after_ready") == 0, text
    assert service.metrics.compiles_after_ready() == 0
