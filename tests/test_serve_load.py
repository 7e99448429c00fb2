"""benchmarks/serve_load.py against a real uvicorn server on loopback (tiny model): every
request answered, none lost, small-request clients measured beside the main ones; the
phone photo it makes is 4000x3000; non-loopback targets refused."""

import asyncio
import io
import time

import numpy as np
import pytest
from inference_fakes import CALIBRATION, fast_predictor, tiny_bundle
from live_server import live_server
from PIL import Image

from agr_jax.serve.app import Limits, create_app
from benchmarks import serve_load


@pytest.fixture(scope="module")
def server_url():
    predictor = fast_predictor(tiny_bundle(CALIBRATION), buckets=(1, 8))
    with live_server(create_app(predictor, detect="none", limits=Limits(max_batch=8))) as url:
        yield url


def test_load_answers_every_request(server_url):
    image = serve_load.generated_image("none")
    report = asyncio.run(serve_load.load(server_url, image, clients=8, requests=4,
                                         max_seconds=120))
    assert report["errors"] == {} and report["lost"] == 0, report
    assert report["ok"] == report["planned"] == 32 and report["requests_s"] > 0
    assert report["p50_ms"] <= report["p99_ms"]
    assert report["compiles_after_ready"] == {"before": 0, "after": 0}


def test_small_clients_stream_while_the_main_clients_run(server_url):
    image = serve_load.generated_image("none")
    small = serve_load.Group(serve_load.centre_crop(image, (40, 48)), 2, None, "none", 0.01)
    report = asyncio.run(serve_load.load(server_url, image, clients=4, requests=5,
                                         max_seconds=120, small=small))
    assert report["ok"] == 20 and report["lost"] == 0, report
    assert report["small"]["ok"] >= 2 and report["small"]["errors"] == {}, report["small"]
    assert report["small"]["planned"] == report["small"]["sent"]
    assert set(serve_load.check_targets(report)) >= {"all_answered", "small_p99_le_1s"}


def test_retry_honours_503_and_every_request_is_answered():
    slow = fast_predictor(tiny_bundle(CALIBRATION), buckets=(1,))
    original = slow.predict_loaded

    def sleepy(loaded, detect):
        time.sleep(0.2)
        return original(loaded, detect)

    slow.predict_loaded = sleepy
    app = create_app(slow, detect="none", warmup=False,
                     limits=Limits(max_pending=1, max_batch=1))
    with live_server(app) as url:
        image = serve_load.generated_image("none")
        report = asyncio.run(serve_load.load(url, image, clients=3, requests=2,
                                             max_seconds=120, retry=True))
    assert report["ok"] == 6 and report["errors"] == {} and report["retries"] >= 1, report


def test_phone_photo_is_a_4000x3000_jpeg_of_the_source(tmp_path):
    source = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)).save(source)
    data = serve_load.phone_photo(source)
    with Image.open(io.BytesIO(data)) as phone:
        assert phone.format == "JPEG" and phone.size == (4000, 3000)
    with pytest.raises(SystemExit, match="no such photo"):
        serve_load.phone_photo(tmp_path / "missing.jpg")


def test_main_reports_json_and_exit_status(server_url, tmp_path, capsys):
    out = tmp_path / "load.json"
    assert serve_load.main(["--url", server_url, "--clients", "2", "--requests", "2",
                            "--detect", "none", "--json", str(out)]) == 0
    assert '"lost": 0' in out.read_text()


def test_only_loopback():
    with pytest.raises(SystemExit, match="only sends to loopback"):
        serve_load.check_loopback("http://example.com:8000")
