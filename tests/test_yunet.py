"""YuNet in Flax against its references, its converter, and the detector's canvas handling.

- raw head outputs against onnxruntime on yunet_n_dynamic.onnx (several sizes, batch 2);
- decoded boxes, landmarks and scores against OpenCV's cv2.FaceDetectorYN on
  yunet_n_640_640.onnx, on real photos and a UTKFace composite resized to 640x640;
- the converter reproduces the packaged npz;
- downscaling, padding, batching, compile counts and input errors;
- the onnxruntime runtime (`yunet_onnx`, our params as an NCHW graph): raw outputs against
  the Flax net, faces against the jax runtime, and the tests above run for both runtimes.
The references need ../shared/weights/yunet (real photos ../shared/photos, crops
../shared/utkface); those tests skip, naming what is missing, without them. Measured
differences are printed (`-s`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agr_jax.bench.detect import crop_scene
from agr_jax.inference import yunet
from agr_jax.inference.yunet import MIN_FACE_PX, WEIGHTS, YuNet, YuNetDetector, load_params

SHARED = Path(os.environ.get("AGR_JAX_SHARED", Path(__file__).resolve().parents[1].parent
                             / "shared"))
ONNX_DIR = SHARED / "weights" / "yunet"
PHOTOS = SHARED / "photos"
UTKFACE = Path(os.environ.get("AGR_JAX_UTKFACE", SHARED / "utkface"))
TOLERANCE_PX = 1.0


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not present at {path}")
    return path


def _cv2():
    return pytest.importorskip(
        "cv2", reason="OpenCV missing: pip install 'opencv-python-headless>=4.8,<5'")


def _utk_crops(n: int, step: int = 379) -> list[np.ndarray]:
    paths = sorted(_need(UTKFACE, "UTKFace crops").glob("*.jpg"))[::step][:n]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _photos() -> dict[str, np.ndarray]:
    paths = sorted(_need(PHOTOS, "real photos").glob("*.jpg"))
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in paths}


def _composite(crops: list[np.ndarray], side: int = 640, cell: int = 160) -> np.ndarray:
    """Crops resized to 0.6-0.9 of a cell, one per cell, on a grey square."""
    rng = np.random.default_rng(0)
    canvas = np.full((side, side, 3), 100, np.uint8)
    per_row = side // cell
    for k, crop in enumerate(crops[:per_row * per_row]):
        s = int(cell * rng.uniform(0.6, 0.9))
        y, x = (k // per_row) * cell, (k % per_row) * cell
        canvas[y:y + s, x:x + s] = np.asarray(Image.fromarray(crop).resize((s, s), Image.BILINEAR))
    return canvas


def _as_rows(faces) -> np.ndarray:
    """(N, 15) x0, y0, x1, y1, 5 landmarks (x, y), score."""
    return np.array([np.r_[f.box, f.landmarks.ravel(), f.score] for f in faces],
                    np.float64).reshape(-1, 15)


def _match(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """One-to-one match (Hungarian on box corners); max box, landmark and score differences."""
    from scipy.optimize import linear_sum_assignment

    assert len(ours) == len(ref), f"{len(ours)} faces, the reference {len(ref)}"
    if not len(ref):
        return 0.0, 0.0, 0.0
    cost = np.abs(ours[:, None, :4] - ref[None, :, :4]).max(axis=2)
    rows, cols = linear_sum_assignment(cost)
    diff = np.abs(ours[rows] - ref[cols])
    return float(diff[:, :4].max()), float(diff[:, 4:14].max()), float(diff[:, 14].max())


def _ort():
    return pytest.importorskip("onnxruntime", reason="pip install 'onnxruntime>=1.24'")


@pytest.fixture(scope="module")
def jax640():
    """max_side 640: 640x640 inputs run at their own size, as FaceDetectorYN's."""
    return YuNetDetector(max_side=640, runtime="jax")


@pytest.fixture(scope="module")
def ort640():
    _ort()
    return YuNetDetector(max_side=640, runtime="onnxruntime")


@pytest.fixture(params=["jax", "onnxruntime"])
def det640(request):
    """Each runtime's max_side-640 detector (one instance per module and runtime)."""
    return request.getfixturevalue("jax640" if request.param == "jax" else "ort640")


def _worst_difference(ours: dict, ref: dict) -> float:
    """Largest |ours - ref| over the outputs, after checking both have the same outputs and
    shapes."""
    assert set(ours) == set(ref)
    worst = 0.0
    for key, value in ref.items():
        assert ours[key].shape == value.shape, key
        worst = max(worst, float(np.abs(ours[key] - value).max()))
    return worst


def test_raw_outputs_match_onnxruntime():
    ort = pytest.importorskip("onnxruntime", reason="pip install 'onnxruntime>=1.24'")
    import jax

    model = _need(ONNX_DIR / "yunet_n_dynamic.onnx", "YuNet ONNX weights")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    params = load_params()
    net = jax.jit(lambda x: YuNet().apply({"params": params}, x))
    rng = np.random.default_rng(0)
    worst = 0.0
    for height, width in ((160, 160), (256, 320), (480, 640)):
        x = rng.uniform(0, 255, (2, height, width, 3)).astype(np.float32)
        ref = dict(zip(names, session.run(None, {"input": x.transpose(0, 3, 1, 2)}),
                       strict=True))
        with jax.default_matmul_precision("float32"):
            ours = jax.device_get(net(x))
        worst = max(worst, _worst_difference(ours, ref))
    print(f"\nYuNet raw outputs vs onnxruntime: max abs difference {worst:.2e}")
    assert worst <= 1e-4


def test_onnx_graph_matches_flax_net():
    """The NCHW graph built from our params, both input layouts, against the Flax net."""
    _ort()
    import jax

    from agr_jax.inference import yunet_onnx

    params = load_params()
    sessions = [yunet_onnx.session(params, layout) for layout in yunet_onnx.LAYOUTS]
    net = jax.jit(lambda x: YuNet().apply({"params": params}, x[..., ::-1].astype("float32")))
    rng = np.random.default_rng(1)
    worst = 0.0
    for height, width in ((96, 160), (256, 224), (320, 320)):
        x = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        with jax.default_matmul_precision("float32"):
            ref = jax.device_get(net(x))
        for session in sessions:
            worst = max(worst, _worst_difference(yunet_onnx.run(session, x), ref))
    print(f"\nONNX graph of our params vs the Flax net: max abs difference {worst:.2e}")
    assert worst <= 1e-4


def test_runtimes_find_the_same_faces(jax640, ort640):
    """Real photos (downscaled to 640): onnxruntime at each photo's size padded to 32, jax
    in its canvases with the mask; one to one, same boxes, landmarks and scores."""
    photos = list(_photos().values())
    ours, ref = ort640.detect(photos), jax640.detect(photos)
    worst, faces = np.zeros(3), 0
    for found, expected in zip(ours, ref, strict=True):
        worst = np.maximum(worst, _match(_as_rows(found), _as_rows(expected)))
        faces += len(found)
    print(f"\nonnxruntime vs jax runtime: {faces} faces in {len(photos)} photos; max box "
          f"{worst[0]:.2e} px, landmark {worst[1]:.2e} px, score {worst[2]:.2e}")
    assert faces >= 20 and worst[0] <= 0.01 and worst[1] <= 0.01 and worst[2] <= 1e-4
    assert ort640.compiles == 0 and ort640.programs() == 0


def test_auto_runtime(monkeypatch):
    """"auto": onnxruntime on a CPU backend where it imports, jax otherwise or when asked."""
    _ort()
    import jax

    det = YuNetDetector(max_side=320, max_batch=1)
    assert det.runtime == ("onnxruntime" if jax.default_backend() == "cpu" else "jax")
    assert YuNetDetector(max_side=320, runtime="jax").runtime == "jax"
    if det.runtime == "onnxruntime":
        assert det.warmup() == det.programs() == det.compiles == 0
        assert det.detect([np.zeros((50, 70, 3), np.uint8)]) == [[]]
    monkeypatch.setattr(yunet, "onnxruntime_available", lambda: False)
    assert yunet.pick_runtime("auto") == "jax"
    monkeypatch.setattr(yunet, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert yunet.pick_runtime("auto") == "jax"
    with pytest.raises(ValueError, match="runtime"):
        YuNetDetector(runtime="tflite")


def test_decoded_faces_match_opencv(det640):
    cv2 = _cv2()
    model = _need(ONNX_DIR / "yunet_n_640_640.onnx", "YuNet ONNX weights")
    images = {name: cv2.resize(im, (640, 640), interpolation=cv2.INTER_AREA)
              for name, im in _photos().items()}
    images["utkface composite"] = _composite(_utk_crops(16))
    totals = {}
    for threshold in (0.9, 0.6):
        det640.score_threshold = threshold
        reference = cv2.FaceDetectorYN.create(str(model), "", (640, 640), threshold, 0.3, 5000)
        try:  # one by one: the batch-1 program the other tests use (a batch of 9 compiles two)
            ours = [det640.detect([image])[0] for image in images.values()]
        finally:
            det640.score_threshold = 0.9
        worst = np.zeros(3)
        faces = 0
        for (name, image), found in zip(images.items(), ours, strict=True):
            ref = reference.detect(np.ascontiguousarray(image[..., ::-1]))[1]
            ref = np.zeros((0, 15)) if ref is None else ref.astype(np.float64)
            ref[:, 2:4] += ref[:, 0:2]  # x, y, w, h -> corners
            diffs = _match(_as_rows(found), ref)
            worst = np.maximum(worst, diffs)
            faces += len(found)
            # the first landmark is the eye on the image's left (MTCNN's "left_eye")
            assert all(f.landmarks[0, 0] < f.landmarks[1, 0] for f in found), name
        totals[threshold] = (faces, *worst)
        print(f"\nvs cv2.FaceDetectorYN at score {threshold}: {faces} faces in {len(images)} "
              f"images; max box {worst[0]:.2e} px, landmark {worst[1]:.2e} px, "
              f"score {worst[2]:.2e}")
        assert worst[0] <= TOLERANCE_PX and worst[1] <= TOLERANCE_PX and worst[2] <= 1e-3
    assert totals[0.9][0] >= 20 and totals[0.6][0] >= totals[0.9][0]


def test_converter_reproduces_packaged_weights(tmp_path):
    pytest.importorskip("onnx", reason="pip install 'onnx>=1.20'")
    from agr_jax.convert.yunet import convert

    model = _need(ONNX_DIR / "yunet_n_dynamic.onnx", "YuNet ONNX weights")
    arrays = convert(model, tmp_path)
    with np.load(WEIGHTS) as shipped, np.load(tmp_path / "yunet.npz") as written:
        assert sorted(shipped.files) == sorted(written.files) == sorted(arrays)
        for key in shipped.files:
            np.testing.assert_array_equal(written[key], shipped[key], err_msg=key)
    assert sum(v.size for v in arrays.values()) == 73_840  # BatchNorm folded into the convs


def test_large_photo_is_downscaled_and_mapped_back(det640):
    cv2 = _cv2()
    photo = _photos()["if_t1.jpg"]  # 1280x886: exactly 2x the 640x443 working copy
    small = cv2.resize(photo, (640, 443), interpolation=cv2.INTER_AREA)
    big_faces, small_faces = det640.detect([photo]), det640.detect([small])
    ours, ref = _as_rows(big_faces[0]), _as_rows(small_faces[0])
    ref[:, :14] *= 2
    box, marks, score = _match(ours, ref)
    print(f"\n1280x886 photo vs its 640x443 copy x2: {len(ours)} faces, box {box:.2e} px, "
          f"landmarks {marks:.2e} px (original pixels)")
    assert len(ours) >= 3 and box <= TOLERANCE_PX and marks <= TOLERANCE_PX


def test_bigger_canvas_and_batching_keep_faces(det640):
    """A 470x600 image runs in the (480, 640) canvas; faces as at OpenCV's own padding
    (480x608, a canvas of exactly that size); a mixed batch as one by one."""
    scene = np.ascontiguousarray(crop_scene(_utk_crops(6), seed=1)[:470, :600])
    exact = YuNetDetector(max_side=640, runtime="jax")
    exact.canvases = ((480, 608),)  # OpenCV's padWithDivisor size
    in_canvas, alone = det640.detect([scene])[0], exact.detect([scene])[0]
    box, marks, score = _match(_as_rows(in_canvas), _as_rows(alone))
    print(f"\n470x600 scene in the 480x640 canvas vs at 480x608: {len(alone)} faces, box "
          f"{box:.2e} px, landmarks {marks:.2e} px")
    assert len(alone) >= 4 and box <= 1e-2 and marks <= 1e-2 and score <= 1e-5
    padded = np.zeros((640, 640, 3), np.uint8)
    padded[:470, :600] = scene
    other = crop_scene(_utk_crops(6, step=401), seed=2)
    images = [scene, padded, other]
    mixed = det640.detect(images)
    for image, faces in zip(images, mixed, strict=True):
        one = det640.detect([image])[0]
        box, marks, score = _match(_as_rows(faces), _as_rows(one))
        assert box <= 1e-2 and marks <= 1e-2 and score <= 1e-5


def _grid(crops: list[np.ndarray], sides: list[int]) -> tuple[np.ndarray, list[tuple]]:
    """Crops resized to `sides`, 6x6 on a grey 640x640; (centre x, centre y, half side)."""
    canvas = np.full((640, 640, 3), 110, np.uint8)
    cells = []
    for k, (crop, s) in enumerate(zip(crops, sides, strict=True)):
        y, x = (k // 6) * 104 + 8, (k % 6) * 104 + 8
        canvas[y:y + s, x:x + s] = np.asarray(Image.fromarray(crop).resize((s, s), Image.BOX))
        cells.append((x + s / 2, y + s / 2, s / 2))
    return canvas, cells


def _found(faces, cells) -> list[float | None]:
    """Per cell, the width of the detection centred in it (None: none)."""
    out = []
    for cx, cy, r in cells:
        hits = [f.box[2] - f.box[0] for f in faces if abs((f.box[0] + f.box[2]) / 2 - cx) < r
                and abs((f.box[1] + f.box[3]) / 2 - cy) < r]
        out.append(hits[0] if hits else None)
    return out


def test_min_face_px_is_found(det640):
    """UTKFace crops shrunk so YuNet's box is MIN_FACE_PX wide (their box-to-crop ratio
    measured at 96 px), 6x6 on a grey 640x640: at least 80 % found (measured 86-92 % on
    three such sets at the default threshold), nothing else."""
    crops = _utk_crops(36, step=251)
    canvas, cells = _grid(crops, [96] * len(crops))
    widths = _found(det640.detect([canvas])[0], cells)
    pairs = [(c, w / 96) for c, w in zip(crops, widths, strict=True) if w is not None]
    assert len(pairs) >= 34
    canvas, cells = _grid([c for c, _ in pairs], [round(MIN_FACE_PX / r) for _, r in pairs])
    faces = det640.detect([canvas])[0]
    found = sum(w is not None for w in _found(faces, cells))
    print(f"\nfaces {MIN_FACE_PX} px wide: {found} of {len(cells)} found, "
          f"{len(faces) - found} other detections")
    assert found >= 0.8 * len(cells) and len(faces) == found


def test_compiles_bounded_by_programs():
    """A folder of many sizes (some above max_side) compiles nothing after warmup()."""
    det = YuNetDetector(max_side=320, max_batch=1, runtime="jax")
    assert det.programs() == 3  # canvases (256, 320), (320, 256), (320, 320); batch 1
    assert det.warmup() == det.programs() == det.compiles
    rng = np.random.default_rng(0)
    sizes = [(37, 50), (200, 320), (320, 200), (300, 300), (641, 480), (480, 641), (90, 700),
             (1000, 30), (256, 320), (129, 257), (320, 320), (500, 375)]
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    for start in range(0, len(images), 3):
        det.detect(images[start:start + 3])
    det.detect(images)
    assert det.compiles == det.programs()


def test_bad_input_names_the_image():
    det = YuNetDetector(max_side=320, max_batch=1)
    ok = np.zeros((64, 64, 3), np.uint8)
    for bad in (ok.astype(np.float32), ok[..., 0], np.zeros((64, 64, 4), np.uint8),
                np.zeros((0, 64, 3), np.uint8), "photo.jpg"):
        with pytest.raises(ValueError, match="image 1: expected an RGB uint8"):
            det.detect([ok, bad])
    with pytest.raises(ValueError, match="max_side"):
        YuNetDetector(max_side=5000)
    assert det.compiles == 0
