"""The MTCNN detector's nets exported as StableHLO and ONNX agree with the Flax nets
(max abs difference <= 1e-4) at batch sizes 1 and 7 from one export. ONNX cases skip, with
the install command, when jax2onnx, onnx or onnxruntime is not installed; an import error in
agr_jax itself fails."""

import json

import numpy as np
import pytest

from agr_jax.inference import export, export_mtcnn, mtcnn

TOLERANCE = 1e-4
PNET_SIDE = 64


@pytest.fixture(scope="module")
def params():
    return mtcnn.load_params()  # committed with the package: missing is a failure


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_mtcnn_nets_export_with_parity(fmt, params, tmp_path):
    missing = export.onnx_missing() if fmt == "onnx" else []
    if missing:
        pytest.skip(f"ONNX export needs {', '.join(missing)}: {export.ONNX_INSTALL}")
    info = export_mtcnn.export_mtcnn(fmt, tmp_path, pnet_side=PNET_SIDE, params=params)
    assert json.loads((tmp_path / "mtcnn.json").read_text()) == info
    modules = {"pnet": mtcnn.PNet(), "rnet": mtcnn.RNet(), "onet": mtcnn.ONet()}
    sides = {"pnet": PNET_SIDE, "rnet": 24, "onet": 48}
    worst = {}
    for name, module in modules.items():
        path = tmp_path / info["nets"][name]["path"]
        for n in (1, 7):
            rng = np.random.default_rng(n)
            crops = ((rng.integers(0, 256, (n, sides[name], sides[name], 3)) - 127.5)
                     / 128).astype(np.float32)
            want = [np.asarray(o) for o in module.apply({"params": params[name]}, crops)]
            got = run_net(fmt, path, crops)
            assert [g.shape for g in got] == [w.shape for w in want]
            worst[(name, n)] = max(float(np.abs(g - w).max()) for g, w in zip(got, want,
                                                                               strict=True))
    print(f"MTCNN {fmt} max abs difference vs Flax: {worst}")
    assert max(worst.values()) <= TOLERANCE, worst


def run_net(fmt: str, path, crops: np.ndarray) -> list[np.ndarray]:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"crops": crops})
    import jax

    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return [np.asarray(o) for o in exported.call(crops)]


def test_entry_point_exports_the_detector(params, tmp_path):
    from agr_jax import export as entry

    assert entry.main(["--mtcnn", "--format", "stablehlo", "--pnet_side", "48",
                       "--out", str(tmp_path)]) == 0
    info = json.loads((tmp_path / "mtcnn.json").read_text())
    assert info["nets"]["pnet"]["input"] == ["B", 48, 48, 3]
    assert sorted(p.name for p in tmp_path.glob("*.stablehlo")) == [
        "onet.stablehlo", "pnet.stablehlo", "rnet.stablehlo"]
