"""The page in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright)
with a fake camera playing a .y4m made from face images; the page sends frames to a live
server and the test reads back the boxes and labels it drew. The screenshot is saved to
runs/test_artifacts/serve_page.png (or $AGR_TEST_ARTIFACTS).

Skipped, saying how to install them, when Playwright or Chromium is missing: `make browser`.
The in-browser mode (onnxruntime-web) is tested when `make ort-web` has fetched it.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from inference_fakes import CALIBRATION, face, fast_predictor, install_fake_align, tiny_bundle
from live_server import live_server
from PIL import Image

from agr_jax.data import synthetic
from agr_jax.serve.app import create_app

ROOT = Path(__file__).resolve().parents[1]
REAL_FACES = ROOT.parent / "shared" / "utkface"
ARTIFACTS = Path(os.environ.get("AGR_TEST_ARTIFACTS", ROOT / "runs" / "test_artifacts"))
ORT_WEB = Path(os.environ.get("AGR_ORT_WEB", ROOT / "runs" / "ort-web" / "dist"))
WIDTH, HEIGHT = 320, 240
# Where the two faces sit in the fake camera's frames (fractions of width and height).
FACE_BOXES = [(0.08, 0.2, 0.43, 0.67), (0.55, 0.2, 0.9, 0.67)]
BOX_COLOUR = (0x00, 0xE6, 0x76)  # the page's first box colour (#00e676)


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


class FixedBoxes:
    """A detector that finds the fake camera's two faces where they were painted."""

    name = "mtcnn"

    def detect(self, images):
        out = []
        for img in images:
            h, w = img.shape[:2]
            out.append([face(x0 * w, y0 * h, x1 * w, y1 * h) for x0, y0, x1, y1 in FACE_BOXES])
        return out


def face_images() -> list[np.ndarray]:
    """Two real UTKFace crops when they are on disk, else two generated faces."""
    paths = sorted(REAL_FACES.glob("*.jpg"))[:2] if REAL_FACES.is_dir() else []
    if len(paths) == 2:
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    rng = np.random.default_rng(0)
    return [synthetic.render(30, 0, 1, rng, size=128), synthetic.render(60, 1, 2, rng, size=128)]


def frame() -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    for (x0, y0, x1, y1), crop in zip(FACE_BOXES, face_images(), strict=True):
        box = [int(round(v)) for v in (x0 * WIDTH, y0 * HEIGHT, x1 * WIDTH, y1 * HEIGHT)]
        image[box[1]:box[3], box[0]:box[2]] = np.asarray(
            Image.fromarray(crop).resize((box[2] - box[0], box[3] - box[1])))
    return image


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
    with pytest.MonkeyPatch.context() as mp:
        install_fake_align(mp)
        predictor = fast_predictor(tiny_bundle(CALIBRATION), buckets=(1, 8), detector=FixedBoxes())
        with live_server(create_app(predictor, detect="mtcnn")) as url:
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


def test_webcam_page_draws_boxes_and_labels_for_the_faces(server_url, tmp_path):
    video = tmp_path / "faces.y4m"
    write_y4m(video, frame())
    with playwright_api.sync_playwright() as p:
        browser = launch(p, video)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.goto(server_url + "/")
            assert green_pixels(page) == 0  # nothing drawn before the camera starts
            page.click("#camera")
            page.wait_for_function("window.agr.frames >= 3", timeout=120_000)
            state = page.evaluate("window.agr")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "serve_page.png"
            page.screenshot(path=str(shot))
            boxes = green_pixels(page)
            listed = page.locator("#labels li").all_inner_texts()
            status = page.inner_text("#status")
            # Uploading a photo stops the camera and draws that photo's faces.
            photo = tmp_path / "photo.jpg"
            Image.fromarray(frame()).save(photo, quality=92)
            frames = state["frames"]
            page.set_input_files("#file", str(photo))
            page.wait_for_function(f"window.agr.frames > {frames} && "
                                   "document.getElementById('camera').textContent "
                                   "=== 'Start webcam'", timeout=60_000)
            uploaded = page.evaluate("window.agr")
        finally:
            browser.close()
    assert state["error"] is None, state["error"]
    assert state["faces"] == 2 and len(state["lastLabels"]) == 2, state
    for record, text in zip(state["lastRecords"], state["lastLabels"], strict=True):
        assert record["gender"] in text and record["race"] in text
        lo, hi = record["age_interval"]
        assert f"{round(record['age'])} ({round(lo)}-{round(hi)})" in text
    assert listed == state["lastLabels"]
    assert "2 face(s)" in status and "faces/s" in status
    assert boxes > 100, f"only {boxes} pixels of the box colour on the canvas"
    assert shot.stat().st_size > 10_000
    assert uploaded["error"] is None and uploaded["faces"] == 2
    assert [r["path"] for r in uploaded["lastRecords"]] == ["upload", "upload"]


def test_in_browser_mode_runs_the_onnx_model_with_onnxruntime_web(tmp_path):
    from inference_fakes import SIZE

    from agr_jax.inference import export

    if not all((ORT_WEB / f).is_file() for f in ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm")):
        pytest.skip(f"onnxruntime-web not at {ORT_WEB}: `make ort-web` (npm) fetches it")
    bundle = tiny_bundle(CALIBRATION)
    onnx_path = tmp_path / "model.onnx"
    export.export(bundle, "onnx", onnx_path)
    video = tmp_path / "faces.y4m"
    write_y4m(video, frame())
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
