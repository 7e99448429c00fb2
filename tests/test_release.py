"""Release format on a tiny trained run: float16 weights that predict as the float32
checkpoint does, calibration fitted on validation, the evaluation scored from the written
files (and re-scored by --refresh without touching the weights), a model card generated
from the evaluation report; the predict entry point on the run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_COMPILE

from agr_jax.inference import release
from agr_jax.inference.predictor import Predictor


@pytest.fixture(scope="module")
def trained(tiny_eval_run):
    return tiny_eval_run


@pytest.fixture(scope="module")
def released(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("released")
    own = trained / "eval" / "test.json"
    before = own.read_bytes() if own.exists() else None
    result = release.release_workdir(trained, out)
    # The run's own report is not overwritten; the release's evaluation sits beside it.
    assert (own.read_bytes() if own.exists() else None) == before
    return result, out


def _crops(synthetic_dir, n=12):
    return sorted(str(p) for p in Path(synthetic_dir).glob("*.jpg"))[:n]


def test_release_folder_card_and_report(released, trained):
    result, out = released
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [release.MODEL_JSON, release.WEIGHTS, release.EVALUATION, release.CARD])
    with np.load(out / release.WEIGHTS) as w:
        assert {w[k].dtype for k in w.files if w[k].dtype.kind == "f"} == {np.dtype("float16")}
    meta = json.loads((out / release.MODEL_JSON).read_text())
    assert meta["preprocessing"]["image_size"] == 16 and meta["model"]["name"] == "ror"
    assert meta["calibration"]["fitted_on"] == "validation split"
    report = json.loads((out / release.EVALUATION).read_text())
    cal = report["calibration_report"]
    assert set(cal["ece"]) == {"gender", "race"}
    assert sum(d["n"] for d in cal["age_interval"]["by_decade"].values()) == report["n"]
    card = (out / release.CARD).read_text()
    for text in (f"{report['age_mae']:.4f}", f"{report['gender_acc']:.4f}",
                 f"{cal['age_interval']['coverage']:.4f}",
                 f"{cal['ece']['race']['before']:.4f}", "non-commercial", "By race",
                 "python -m agr_jax.release --workdir", "Limitations"):
        assert text in card, text
    assert "## Calibration (fitted on the validation split)" in card
    assert "true-age decade" in card and "predicted age (years)" in card
    assert report["tta"] == "" and report["flip_tta"] is False  # as the predictor runs it


def test_the_release_scores_the_files_it_wrote(released, trained):
    """The report is of weights.npz (float16) run by the Predictor, not of the checkpoint:
    its age MAE is what the shipped files give on the test split."""
    from agr_jax import configuration
    from agr_jax.data import tfds_builders
    from agr_jax.inference.load import tfds_dir_of

    _, out = released
    report = json.loads((out / release.EVALUATION).read_text())
    assert report["scored"]["weights_sha256"] == release.weights_sha256(out)
    assert report["scored"]["compute_dtype"] == "float32"
    tfds_dir = tfds_dir_of(configuration.load(trained), trained)
    shipped = Predictor.from_release(out, compiler_options=FAST_COMPILE).predict_labelled(
        tfds_builders.load_split(tfds_dir, "test"))
    assert report["n"] == len(shipped["age"])
    assert report["age_mae"] == pytest.approx(
        float(np.mean(np.abs(shipped["age_pred"] - shipped["age"]))), abs=1e-4)


def test_refresh_rescores_without_touching_the_weights(released, trained, tmp_path):
    import shutil

    from agr_jax import configuration
    from agr_jax.inference.load import tfds_dir_of

    _, out = released
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    before = release.weights_sha256(folder)
    (folder / release.CARD).write_text("stale")
    tfds_dir = tfds_dir_of(configuration.load(trained), trained)
    result = release.refresh_release(folder, tfds_dir)
    assert release.weights_sha256(folder) == before
    assert (folder / release.CARD).read_text() != "stale"
    old = json.loads((out / release.EVALUATION).read_text())
    assert result["report"]["age_mae"] == pytest.approx(old["age_mae"], abs=1e-6)
    # a release scored on another protocol is refused, nothing written
    stale = {**old, "protocol": "some other split"}
    (folder / release.EVALUATION).write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="refresh on the build the release was evaluated"):
        release.refresh_release(folder, tfds_dir)
    assert json.loads((folder / release.EVALUATION).read_text()) == stale


def test_float16_release_predicts_as_the_float32_checkpoint(released, trained, synthetic_dir):
    _, out = released
    files = _crops(synthetic_dir)
    half = Predictor.from_release(out, compiler_options=FAST_COMPILE)(files, detect="none")
    full_bundle = Predictor.from_release(out).bundle
    from agr_jax.inference.load import load_workdir

    checkpoint = load_workdir(trained)
    checkpoint.calibration = full_bundle.calibration
    full = Predictor(checkpoint, compiler_options=FAST_COMPILE)(files, detect="none")
    assert len(half) == len(full) == len(files)
    for a, b in zip(half, full, strict=True):
        assert a["age"] == pytest.approx(b["age"], abs=0.3)
        for task in ("gender_prob", "race_prob"):
            assert np.allclose(list(a[task].values()), list(b[task].values()), atol=5e-3)
        assert a["age_interval"] is not None


def test_from_workdir_calibrates_like_the_release(released, trained):
    _, out = released
    fitted = Predictor.from_workdir(trained, compiler_options=FAST_COMPILE).bundle.calibration
    shipped = json.loads((out / release.MODEL_JSON).read_text())["calibration"]
    assert fitted["views"] == shipped["views"] == 1
    # Same validation faces, same single view: float16 vs float32 weights aside, the same fit.
    assert fitted["age_interval"]["edges"] == pytest.approx(
        shipped["age_interval"]["edges"], abs=0.5)
    assert fitted["gender_temperature"] == pytest.approx(shipped["gender_temperature"],
                                                         rel=0.1)


def test_default_without_a_release_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "released_dir", lambda name="default": tmp_path)
    with pytest.raises(FileNotFoundError, match="no released model here.*agr_jax.release"):
        Predictor.default()


def test_predict_entry_point_on_a_workdir(trained, synthetic_dir):
    files = _crops(synthetic_dir, 2)
    proc = subprocess.run(
        [sys.executable, "-m", "agr_jax.predict", "--workdir", str(trained), "--detector",
         "none", *files, str(Path(synthetic_dir) / "missing.jpg")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1, proc.stderr
    assert [r["path"] for r in rows] == [*files, str(Path(synthetic_dir) / "missing.jpg")]
    assert rows[-1]["reason"] == "error: file not found" and rows[0]["age"] is not None
    lo, hi = rows[0]["age_interval"]  # --workdir: calibrated on the run's validation split
    assert lo <= rows[0]["age"] <= hi
