"""Export: StableHLO and ONNX files of a tiny model agree with the Flax predictor (calibrated
outputs, max abs difference <= 1e-4 in float32) at batch sizes 1, 7 and 64 from one export;
the entry point writes both formats and their sidecar. ONNX cases skip, with the install
command, when jax2onnx, onnx or onnxruntime is not installed."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from inference_fakes import CALIBRATION, SIZE, fast_predictor, tiny_bundle

from agr_jax.data import synthetic
from agr_jax.inference import export

TOLERANCE = 1e-4
REAL_CROPS = Path(__file__).resolve().parents[2] / "shared" / "utkface"


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(CALIBRATION)


@pytest.fixture(scope="module")
def reference(bundle):
    return fast_predictor(bundle, buckets=(1, 8, 64))


def needs(fmt: str) -> None:
    """Skip an ONNX case when its third-party modules are not installed."""
    missing = export.onnx_missing() if fmt == "onnx" else []
    if missing:
        pytest.skip(f"ONNX export needs {', '.join(missing)}: {export.ONNX_INSTALL}")


@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory):
    """`exported(fmt)`: the path of one export per format, made on first use and shared by
    the tests (exports take seconds each)."""
    folder, paths = tmp_path_factory.mktemp("exported"), {}

    def path(fmt: str) -> str:
        needs(fmt)
        if fmt not in paths:
            paths[fmt] = export.export(bundle, fmt, folder / f"model.{fmt}")["path"]
        return paths[fmt]

    return path


def crops(n: int) -> np.ndarray:
    """Generated faces (synthetic renders), plus real UTKFace crops when they are on disk."""
    from PIL import Image

    rng = np.random.default_rng(n)
    out = [np.asarray(Image.fromarray(synthetic.render(30, k % 2, k % 5, rng)).resize(
        (SIZE, SIZE))) for k in range(n)]
    real = sorted(REAL_CROPS.glob("*.jpg"))[:n // 2] if REAL_CROPS.is_dir() else []
    for k, path in enumerate(real):
        out[k] = np.asarray(Image.open(path).convert("RGB").resize((SIZE, SIZE)))
    return np.stack(out)


def max_differences(got: dict, want: dict) -> dict[str, float]:
    return {k: float(np.max(np.abs(np.asarray(got[k], np.float64)
                                   - np.asarray(want[k], np.float64))))
            for k in export.OUTPUTS}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_exported_matches_flax_at_batch_1_7_64(fmt, exported, reference):
    run = export.load(exported(fmt))
    report = {}
    for n in (1, 7, 64):
        x = crops(n)
        got, want = run(x), reference.predict_crops(x)
        assert {k: np.shape(v) for k, v in got.items()} == {
            "age": (n,), "age_interval": (n, 2), "gender_prob": (n, 2), "race_prob": (n, 5)}
        report[n] = max_differences(got, want)
        assert max(report[n].values()) <= TOLERANCE, (fmt, n, report[n])
    print(f"{fmt} max abs difference vs Flax: {report}")
    # The calibration is inside the file: the interval moves with the fitted offsets.
    lo, hi = got["age_interval"].T
    assert np.all(lo <= got["age"] + 1e-4) and np.all(hi >= got["age"] - 1e-4)
    assert np.any(hi - lo > 0)


def test_onnx_has_a_symbolic_batch_and_uint8_input(bundle, exported):
    needs("onnx")
    import onnx

    model = onnx.load(exported("onnx"))
    image = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert image.name == "image" and dims == ["B", SIZE, SIZE, 3]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in model.graph.output] == list(export.OUTPUTS)
    ops = {n.op_type for n in model.graph.node}
    assert not any("custom" in op.lower() for op in ops), ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["agr_jax"])["race_names"] == list(bundle.race_names)


def _conv_layers(bundle) -> int:
    """Convolution kernels in the weights (4-D leaves named kernel)."""
    return sum(getattr(path[-1], "key", None) == "kernel" and np.ndim(leaf) == 4
               for path, leaf in jax.tree_util.tree_leaves_with_path(bundle.variables))


def test_each_file_holds_the_network_once(bundle, exported):
    """One forward per file, whatever the number of outputs: a graph that traced the network
    per output runs that many times slower in onnxruntime (XLA's CSE would hide it)."""
    layers = _conv_layers(bundle)
    module = jax.export.deserialize(bytearray(Path(exported("stablehlo")).read_bytes()))
    assert module.mlir_module().count("stablehlo.convolution") == layers
    import onnx  # after `exported`, which skips without it

    assert layers > 0
    onnx_convs = sum(n.op_type == "Conv" for n in onnx.load(exported("onnx")).graph.node)
    assert onnx_convs == layers


ONE_GROUP = {**CALIBRATION, "age_interval": {"level": 0.9, "edges": [], "low": [-5.0],
                                              "high": [6.0]}}


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("calibration", [None, ONE_GROUP], ids=["uncalibrated", "one_group"])
def test_uncalibrated_and_single_group_exports(fmt, calibration, tmp_path):
    needs(fmt)
    plain = tiny_bundle(calibration, seed=1)
    path = tmp_path / f"plain.{fmt}"
    export.export(plain, fmt, path)
    got = export.load(path)(crops(3))
    want = fast_predictor(plain, buckets=(8,)).predict_crops(crops(3))
    if calibration is None:
        assert np.isnan(got["age_interval"]).all()
        assert max(max_differences(got, want)[k] for k in ("age", "race_prob")) <= TOLERANCE
    else:
        assert max(max_differences(got, want).values()) <= TOLERANCE


def test_entry_point_exports_the_release_by_default(bundle, tmp_path, monkeypatch):
    from agr_jax import export as entry
    from agr_jax.inference import release

    folder = release.write_release(bundle, tmp_path / "release", dtype=np.float32)
    monkeypatch.setattr(release, "released_dir", lambda name="default": folder)
    out = tmp_path / "cli.stablehlo"
    assert entry.main(["--format", "stablehlo", "--out", str(out)]) == 0
    assert entry.FORMATS == export.FORMATS
    sidecar = json.loads(Path(f"{out}.json").read_text())
    assert sidecar["format"] == "stablehlo" and sidecar["input"]["shape"] == ["B", SIZE, SIZE, 3]
    got, want = export.load(out)(crops(2)), fast_predictor(bundle).predict_crops(crops(2))
    assert max(max_differences(got, want).values()) <= TOLERANCE


def test_onnx_speed_beside_jax_runs_and_agrees(bundle):
    needs("onnx")
    from agr_jax.bench.onnx_speed import onnx_beside_jax

    result = onnx_beside_jax(bundle, batch=8, images=16, rounds=1)
    assert result["onnx_crops_s"] > 0 and result["jax_crops_s"] > 0
    assert result["max_abs_diff"] <= TOLERANCE
