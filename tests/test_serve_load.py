"""benchmarks/serve_load.py against a real uvicorn server on loopback (tiny model): every
request answered, none lost; non-loopback targets refused."""

import asyncio

import pytest
from inference_fakes import CALIBRATION, fast_predictor, tiny_bundle
from live_server import live_server

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


def test_main_reports_json_and_exit_status(server_url, tmp_path, capsys):
    out = tmp_path / "load.json"
    assert serve_load.main(["--url", server_url, "--clients", "2", "--requests", "2",
                            "--detect", "none", "--json", str(out)]) == 0
    assert '"lost": 0' in out.read_text()


def test_only_loopback():
    with pytest.raises(SystemExit, match="only sends to loopback"):
        serve_load.check_loopback("http://example.com:8000")
