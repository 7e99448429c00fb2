"""Evaluation report: metrics by hand, then one tiny trained run evaluated end to end."""

import json

import numpy as np
import pytest

from agr_jax import metrics


def test_confusion_and_per_class_scores_by_hand():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 0, 1])
    rep = metrics.classification_report(pred, true, ["a", "b", "c"])
    assert rep["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    assert rep["accuracy"] == pytest.approx(3 / 6)
    a, b, c = (rep["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (b["precision"], b["recall"]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert c["f1"] == 0.0 and c["support"] == 1
    assert b["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert rep["macro_f1"] == pytest.approx((a["f1"] + b["f1"] + 0.0) / 3)


def test_age_bins_default_edges():
    edges = metrics.DEFAULT_AGE_BIN_EDGES
    assert metrics.age_bin_labels(edges) == [
        "1-5", "6-12", "13-19", "20-26", "27-34", "35-42", "43-49", "50-61", "62+"]
    ages = np.array([0, 1, 5, 5.4, 5.6, 6, 12, 13, 26, 27, 61, 62, 116])
    assert metrics.age_bin_index(ages, edges).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 7, 8, 8]


def _result():
    rng = np.random.default_rng(0)
    n = 200
    age = rng.integers(1, 90, n).astype(np.float32)
    race = rng.integers(0, 5, n)
    gender = rng.integers(0, 2, n)
    # race 1 gets everything wrong on gender and a 10-year age error: a known gap.
    bad = race == 1
    return {
        "age": age,
        "age_pred": np.where(bad, age + 10, age + 1).astype(np.float32),
        "gender": gender,
        "gender_pred": np.where(bad, 1 - gender, gender),
        "race": race,
        "race_pred": race,
        "loss": np.zeros(n, np.float32),
    }


def test_full_report_groups_gaps_decades_coral():
    res = _result()
    rep = metrics.full_report(res, ["male", "female"], ["W", "B", "A", "I", "O"])
    assert rep["n"] == 200
    bad = res["race"] == 1
    assert rep["age_mae"] == pytest.approx((10 * bad.sum() + (~bad).sum()) / 200)
    assert rep["by_race"]["B"]["gender_acc"] == 0.0
    assert rep["by_race"]["W"]["gender_acc"] == 1.0
    assert rep["gaps"]["race"]["gender_acc"] == pytest.approx(1.0)
    assert rep["gaps"]["race"]["age_mae"] == pytest.approx(9.0)
    assert rep["gaps"]["race"]["race_acc"] == 0.0
    assert sum(g["n"] for g in rep["by_gender"].values()) == 200
    assert sum(d["n"] for d in rep["mae_by_decade"].values()) == 200
    in_coral = (res["age"] >= 21) & (res["age"] <= 60)
    assert rep["coral"]["n"] == int(in_coral.sum())
    assert rep["coral"]["age_mae"] == pytest.approx(
        np.abs(res["age_pred"] - res["age"])[in_coral].mean())
    json.dumps(rep)  # JSON-ready


def test_missing_race_labels_are_not_scored():
    res = _result()
    res["race"][:50] = -1
    rep = metrics.full_report(res, ["male", "female"], ["W", "B", "A", "I", "O"])
    assert rep["race"]["accuracy"] == 1.0 and rep["race_acc"] == 1.0
    assert sum(c["support"] for c in rep["race"]["per_class"].values()) == 150


def test_flip_tta_averages_mirror_outputs():
    import jax.numpy as jnp

    from agr_jax.evaluation import tta, tta_views

    def step(state, batch):  # "age" = mean of the left half: differs under a flip
        x = batch["image"]
        left = x[:, :, : x.shape[2] // 2].mean(axis=(1, 2, 3))
        p = jnp.stack([left, 1 - left], -1)
        return {"age_pred": left, "gender_prob": p, "gender_pred": jnp.argmax(p, -1),
                "race_prob": p, "race_pred": jnp.argmax(p, -1), "loss": left}

    img = jnp.zeros((1, 2, 4, 1)).at[:, :, :2].set(1.0)  # left half white
    out = tta(step, tta_views(flip=True))(None, {"image": img})
    assert float(out["age_pred"][0]) == pytest.approx(0.5)
    assert float(out["gender_prob"][0, 0]) == pytest.approx(0.5)
    assert out["gender_pred"].shape == (1,)


def test_shift_tta_views_match_the_training_pad_crop():
    """Each shifted view is the pipeline's reflect-pad + crop at that offset, and the grid
    holds every offset pair once (with and without the mirror)."""
    import jax.numpy as jnp

    from agr_jax.data.pipeline import augment_batch, augment_draws
    from agr_jax.evaluation import shifted_view, tta_views

    views = tta_views(flip=True, shift=2)
    assert len(views) == len(set(views)) == 18 and (0, 0, False) in views
    assert {(dy, dx) for dy, dx, _ in views} == {(a, b) for a in (-2, 0, 2) for b in (-2, 0, 2)}
    assert tta_views(flip=False, shift=0) == ((0, 0, False),)
    img = np.random.default_rng(0).integers(0, 255, (1, 10, 10, 3), dtype=np.uint8)
    for dy, dx, mirrored in views:
        got = np.asarray(shifted_view(jnp.asarray(img), dy, dx, mirrored))[0]
        src = img[0][:, ::-1] if mirrored else img[0]  # mirror first, then the crop
        want = np.pad(src, ((2, 2), (2, 2), (0, 0)), mode="reflect")[2 + dy: 12 + dy,
                                                                      2 + dx: 12 + dx]
        np.testing.assert_array_equal(got, want, err_msg=str((dy, dx, mirrored)))
    # The training augmentation draws these same crops (pad 2: offsets 0..4, centre 2).
    aug = {"flip": False, "rotate_deg": 0.0, "pad_crop": 2, "noise_std": 0.0}
    crops = {(dy, dx): np.asarray(shifted_view(jnp.asarray(img), dy, dx, False))[0]
             for dy, dx, m in views if not m}
    seen = set()
    for position in range(200):
        batch = img.copy()
        augment_batch(batch, augment_draws(0, np.array([position])), aug)
        seen |= {k for k, crop in crops.items() if np.array_equal(batch[0], crop)}
    assert seen == set(crops)


# --- End to end: a tiny run, then python -m agr_jax.evaluate's library function -----------

@pytest.fixture(scope="module")
def trained(tiny_eval_run):
    return tiny_eval_run


def test_training_curves_png_written(trained):
    png = trained / "training_curves.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_writes_json_markdown_and_figures(trained):
    from agr_jax.evaluation import evaluate_workdir

    rep = evaluate_workdir(trained, "test")
    saved = json.loads((trained / "eval" / "test.json").read_text())
    for key in ("age_mae", "gender_acc", "race_acc", "n", "age_cs5", "age_bin_acc"):
        assert key in saved
    assert saved["n"] == rep["n"] > 0 and saved["flip_tta"] is True
    assert saved["tta"] == "2 views: the face and its mirror"
    assert set(saved["by_race"]) <= {"White", "Black", "Asian", "Indian", "Others"}
    assert "seeded split by capture timestamp" in saved["protocol"]
    md = (trained / "eval" / "test.md").read_text()
    for text in ("## Headline", "By race", "max-min gap", "CORAL", "Confusion", "MAE per"):
        assert text in md
    for rel in saved["figures"].values():
        path = trained / "eval" / rel
        assert path.read_bytes()[:4] == b"\x89PNG"
        assert f"]({rel})" in md
    assert len(saved["figures"]) == 7

    coral = evaluate_workdir(trained, "test", protocol="coral", figures=False)
    assert coral["n"] == rep["coral"]["n"]
    assert coral["age_mae"] == pytest.approx(rep["coral"]["age_mae"])
    assert (trained / "eval" / "test_coral.json").exists()
    with pytest.raises(ValueError, match="kfold"):
        evaluate_workdir(trained, "test", protocol="kfold", figures=False)


def test_default_checkpoint_comes_from_the_run_config(trained):
    from agr_jax.evaluation import evaluate_workdir

    config_path = trained / "config.json"
    saved = config_path.read_text()
    try:
        config_path.write_text(json.dumps({**json.loads(saved), "eval_checkpoint": "latest"}))
        rep = evaluate_workdir(trained, "validation", figures=False)
        assert rep["checkpoint"] == "latest"
        assert evaluate_workdir(trained, "validation", which="best",
                                figures=False)["checkpoint"] == "best"
    finally:
        config_path.write_text(saved)
    assert evaluate_workdir(trained, "validation", figures=False)["checkpoint"] == "best"


def test_shift_tta_flag_overrides_the_run_config(trained):
    """18 views (the config's flip x the 3x3 shift grid) give other numbers than the flip
    alone, say so in the report; a shift the image cannot reflect-pad is refused."""
    from agr_jax.evaluation import evaluate_workdir

    flip = evaluate_workdir(trained, "validation", figures=False)
    grid = evaluate_workdir(trained, "validation", figures=False, shift_tta=2)
    assert grid["shift_tta"] == 2 and grid["n"] == flip["n"]
    assert grid["tta"] == ("18 views: the face and its mirror, each at the 3x3 grid of "
                           "shifts by 0 or +-2 px")
    assert grid["age_mae"] != pytest.approx(flip["age_mae"], abs=1e-6)
    assert "mean over 18 views" in (trained / "eval" / "validation.md").read_text()
    plain = evaluate_workdir(trained, "validation", figures=False, flip_tta=False)
    assert plain["tta"] == "" and plain["age_mae"] != pytest.approx(flip["age_mae"], abs=1e-6)
    with pytest.raises(ValueError, match="eval_shift_tta"):
        evaluate_workdir(trained, "validation", figures=False, shift_tta=8)  # 16 px images


def test_evaluate_folder_lists_skipped(trained, synthetic_dir):
    from agr_jax.data import synthetic
    from agr_jax.evaluation import evaluate_workdir

    rep = evaluate_workdir(trained, data_dir=synthetic_dir, figures=False)
    assert rep["n"] == 120
    assert {s["file_name"] for s in rep["skipped"]} == set(synthetic.MALFORMED)
    md = (trained / "eval" / f"{synthetic_dir.name}.md").read_text()
    assert "Skipped files" in md


def test_protocol_descriptions():
    from agr_jax.evaluation import _protocol_text

    fold = {"folds": 5, "fold": 2, "seed": 0}
    assert "fold 2 of 5" in _protocol_text("kfold", fold, folder=False)
    assert _protocol_text("coral", fold, folder=False).startswith("CORAL: true ages 21-60")
    assert "seeded split" in _protocol_text("split", {"seed": 0, "ratios": [0.8, 0.1, 0.1]},
                                            folder=False)
    assert "by person" in _protocol_text("split", {"dataset": "imdb_wiki", "seed": 0},
                                         folder=False)
    with pytest.raises(ValueError, match="--folds"):
        _protocol_text("kfold", {"seed": 0}, folder=False)


def test_summarize_folds_mean_std():
    from agr_jax.evaluation import summarize_folds

    res = _result()
    names = ["W", "B", "A", "I", "O"]
    folds = []
    for k in range(3):
        part = metrics.subset(res, np.arange(len(res["age"])) % 3 == k)
        folds.append(metrics.full_report(part, ["male", "female"], names))
    summary = summarize_folds(folds)
    maes = [f["age_mae"] for f in folds]
    assert summary["folds"] == 3 and summary["mean"]["n"] == pytest.approx(200 / 3)
    assert summary["mean"]["age_mae"] == pytest.approx(np.mean(maes))
    assert summary["std"]["age_mae"] == pytest.approx(np.std(maes, ddof=1))
    assert summary["mean"]["race_gap_gender_acc"] == pytest.approx(1.0)
    assert [f["age_mae"] for f in summary["per_fold"]] == maes
