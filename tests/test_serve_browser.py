"""The page in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright)
with a fake camera playing a .y4m of two real faces (matplotlib's sample portrait and its
mirror); the page sends frames to a live server whose real YuNet detector finds them, and
the test reads back the boxes and labels it drew. The screenshot is saved to
runs/test_artifacts/serve_page.png (or $AGR_TEST_ARTIFACTS).

Skipped, saying how to install them, when Playwright or Chromium is missing: `make browser`.
The in-browser mode (onnxruntime-web) is tested when `make ort-web` has fetched it.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from inference_fakes import CALIBRATION, fast_predictor, tiny_bundle, two_portraits
from live_server import live_server
from PIL import Image

from agr_jax.serve.app import Limits, create_app

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("AGR_TEST_ARTIFACTS", ROOT / "runs" / "test_artifacts"))
ORT_WEB = Path(os.environ.get("AGR_ORT_WEB", ROOT / "runs" / "ort-web" / "dist"))
WIDTH, HEIGHT = 320, 240
BOX_COLOUR = (0x00, 0xE6, 0x76)  # the page's first box colour (#00e676)
EXIF_ORIENTATION = 0x0112


def chromium_path() -> str | None:
    for name in (os.environ.get("AGR_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome"):
        if name and (path := shutil.which(name) or (Path(name).is_file() and name)):
            return str(path)
    return None


playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: `make browser` (or "
    "`pip install playwright` and `apt-get install chromium`)")
CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (set AGR_CHROMIUM=/path or run `make browser`, "
    "which runs `apt-get install -y chromium` as root)")


def frame() -> tuple[np.ndarray, list[tuple]]:
    """The camera's frame: two real faces side by side, and the rectangles they fill."""
    return two_portraits(HEIGHT, WIDTH)


def centred_in(records: list[dict], rects: list[tuple], scale: float = 1.0) -> bool:
    """One box per rectangle, its centre inside it (boxes in pixels of a photo `scale`
    times the rectangles' frame)."""
    boxes = sorted((r["box"] for r in records if r["box"]), key=lambda b: b[0])
    if len(boxes) != len(rects):
        return False
    return all(x0 <= (b[0] + b[2]) / 2 / scale <= x1 and y0 <= (b[1] + b[3]) / 2 / scale <= y1
               for b, (x0, y0, x1, y1) in zip(boxes, rects, strict=True))


def write_y4m(path: Path, rgb: np.ndarray, frames: int = 10) -> None:
    """YUV4MPEG2 4:2:0 (BT.601), what --use-file-for-fake-video-capture plays."""
    x = rgb.astype(np.float32)
    y = 16 + 0.257 * x[..., 0] + 0.504 * x[..., 1] + 0.098 * x[..., 2]
    u = 128 - 0.148 * x[..., 0] - 0.291 * x[..., 1] + 0.439 * x[..., 2]
    v = 128 + 0.439 * x[..., 0] - 0.368 * x[..., 1] - 0.071 * x[..., 2]
    sub = lambda c: c.reshape(HEIGHT // 2, 2, WIDTH // 2, 2).mean((1, 3))
    planes = b"".join(np.clip(p, 0, 255).round().astype(np.uint8).tobytes()
                      for p in (y, sub(u), sub(v)))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)


@pytest.fixture(scope="module")
def server_url():
    """The tiny model behind the real YuNet detector (canvases up to 320 px, batches of 1:
    3 programs to compile at start-up) and the real alignment."""
    from agr_jax.inference.yunet import YuNetDetector

    predictor = fast_predictor(tiny_bundle(CALIBRATION), buckets=(1, 8),
                               detector=YuNetDetector(max_side=320, max_batch=1))
    app = create_app(predictor, detect="yunet", limits=Limits(max_batch_photos=1))
    with live_server(app) as url:
        yield url


def green_pixels(page) -> int:
    return page.evaluate("""([r, g, b]) => {
        const c = document.getElementById('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        const near = (a, b) => Math.abs(a - b) < 24;
        for (let i = 0; i < d.length; i += 4)
            if (near(d[i], r) && near(d[i + 1], g) && near(d[i + 2], b)) n++;
        return n; }""", list(BOX_COLOUR))


def launch(p, video: Path):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={video}"])


def sideways_jpeg(path: Path, upright: np.ndarray) -> None:
    """`upright` stored as a phone stores a portrait-held shot: pixels turned 90 degrees
    anticlockwise, EXIF orientation 6 ("turn clockwise to show")."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(path, quality=92,
                                                                      exif=exif)


def test_webcam_page_draws_boxes_and_labels_for_the_faces(server_url, tmp_path):
    image, rects = frame()
    video = tmp_path / "faces.y4m"
    write_y4m(video, image)
    big, big_rects = two_portraits(480, 640)
    photo = tmp_path / "sideways.jpg"
    sideways_jpeg(photo, big)
    with playwright_api.sync_playwright() as p:
        browser = launch(p, video)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.goto(server_url + "/")
            assert green_pixels(page) == 0  # nothing drawn before the camera starts
            page.wait_for_selector("#detect option[value=yunet]", state="attached")
            page.click("#camera")
            page.wait_for_function("window.agr.frames >= 3", timeout=120_000)
            state = page.evaluate("window.agr")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "serve_page.png"
            page.screenshot(path=str(shot))
            boxes = green_pixels(page)
            listed = page.locator("#labels li").all_inner_texts()
            status = page.inner_text("#status")
            # Uploading a photo stops the camera and draws that photo's faces, upright as
            # its EXIF orientation says (the server turns it the same way).
            page.set_input_files("#file", str(photo))
            page.wait_for_function("(window.agr.lastImage.width !== 320 || "
                                   "window.agr.error !== null) && "
                                   "document.getElementById('camera').textContent "
                                   "=== 'Start webcam'", timeout=60_000)
            uploaded = page.evaluate("window.agr")
        finally:
            browser.close()
    assert state["error"] is None, state["error"]
    # The boxes come from the detector: one on each face, where the face was painted.
    assert state["faces"] == 2 and len(state["lastLabels"]) == 2, state
    assert centred_in(state["lastRecords"], rects), (state["lastRecords"], rects)
    for record, text in zip([r for r in state["lastRecords"] if r["box"]],
                            state["lastLabels"], strict=True):
        assert record["gender"] in text and record["race"] in text
        lo, hi = record["age_interval"]
        assert f"{round(record['age'])} ({round(lo)}-{round(hi)})" in text
    assert listed == state["lastLabels"]
    assert "2 face(s)" in status and "faces/s" in status
    assert boxes > 100, f"only {boxes} pixels of the box colour on the canvas"
    assert shot.stat().st_size > 10_000
    assert uploaded["error"] is None and uploaded["faces"] == 2, uploaded
    assert [r["path"] for r in uploaded["lastRecords"]] == ["upload", "upload"]
    # Drawn upright (stored 480 wide and 640 high): the server's size and the canvas agree.
    assert uploaded["lastImage"] == {"width": 640, "height": 480}
    assert uploaded["canvasSize"] == [640, 480]
    assert centred_in(uploaded["lastRecords"], big_rects), uploaded["lastRecords"]


def test_in_browser_mode_runs_the_onnx_model_with_onnxruntime_web(tmp_path):
    from inference_fakes import SIZE

    from agr_jax.inference import export

    if not all((ORT_WEB / f).is_file() for f in ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm")):
        pytest.skip(f"onnxruntime-web not at {ORT_WEB}: `make ort-web` (npm) fetches it")
    bundle = tiny_bundle(CALIBRATION)
    onnx_path = tmp_path / "model.onnx"
    export.export(bundle, "onnx", onnx_path)
    video = tmp_path / "faces.y4m"
    write_y4m(video, frame()[0])
    predictor = fast_predictor(bundle, buckets=(1,))
    app = create_app(predictor, detect="none", in_browser=(ORT_WEB, onnx_path))
    with live_server(app) as url, playwright_api.sync_playwright() as p:
        browser = launch(p, video)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            console = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(url + "/")
            page.wait_for_selector("#inbrowser-label:not([hidden])", timeout=30_000)
            page.check("#inbrowser")
            page.click("#camera")
            page.wait_for_function("window.agr.error !== null || (window.agr.frames >= 10 "
                                   "&& window.agr.mode === 'browser')", timeout=120_000)
            state = page.evaluate("window.agr")
            page.screenshot(path=str(ARTIFACTS / "serve_page_in_browser.png"))
        finally:
            browser.close()
    assert state["error"] is None, (state["error"], console)
    (record,) = state["lastRecords"]
    assert record["box"] == [40, 0, 280, 240]  # the centre square of the 320x240 frame
    # onnxruntime-web and onnxruntime (Python) agree on the crop the page fed the model.
    crop = np.asarray(state["lastCrop"], np.uint8).reshape(1, SIZE, SIZE, 3)
    want = export.load_onnx(onnx_path)(crop)
    assert abs(record["age"] - float(want["age"][0])) <= 1e-3
    assert record["age_interval"] == pytest.approx(want["age_interval"][0].tolist(), abs=1e-3)
    got_race = [record["race_prob"][n] for n in bundle.race_names]
    assert np.allclose(got_race, want["race_prob"][0], atol=1e-5)
    print(f"in-browser (onnxruntime-web, wasm, 1 thread, {SIZE}px tiny model): "
          f"{state['framesPerSecond']:.1f} frames/s in headless Chromium")
    assert state["framesPerSecond"] > 0
