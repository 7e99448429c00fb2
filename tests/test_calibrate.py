"""Calibration: temperature scaling recovers a known temperature and lowers ECE; the age
interval conditioned on the predicted age holds its coverage per age decade where one
global interval does not."""

import numpy as np
import pytest

from agr_jax.inference import calibrate


def _overconfident(n, true_t, seed):
    """Labels drawn from softmax(z), reported probabilities softmax(z * true_t): a model
    whose logits are `true_t` times too large."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    p_true = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in p_true])
    p_model = np.exp(z * true_t) / np.exp(z * true_t).sum(-1, keepdims=True)
    return p_model, labels


def test_temperature_recovered_and_ece_lowered():
    probs, labels = _overconfident(4000, 2.5, 0)
    t = calibrate.fit_temperature(probs, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    test_p, test_y = _overconfident(4000, 2.5, 1)
    before, after = calibrate.ece(test_p, test_y), calibrate.ece(
        calibrate.scaled_probs(test_p, t), test_y)
    assert before > 0.08 and after < 0.03, (before, after)


def test_ece_by_hand_and_unlabelled_rows_ignored():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, -1])
    # bins: 0.9 -> acc 0.5 (2 faces), 0.6 -> acc 1.0 (1 face): (2 * 0.4 + 1 * 0.4) / 3
    assert calibrate.ece(probs, labels) == pytest.approx(0.4)


def _ages(n, seed):
    """Errors grow with age (sd 1 year for babies, ~10 for the elderly), as real ones do."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0, 90, n)
    pred = true + rng.normal(0, 1 + true / 9, n)
    return np.clip(pred, 0, 116), true


def _coverage_by_decade(pred, true, interval):
    bounds = calibrate.age_interval(pred, interval)
    inside = (true >= bounds[:, 0]) & (true <= bounds[:, 1])
    decade = (true // 10).astype(int)
    return {d: inside[decade == d].mean() for d in np.unique(decade)}, inside.mean()


def test_age_interval_covers_per_decade():
    interval = calibrate.fit_age_interval(*_ages(6000, 0))
    assert len(interval["edges"]) == calibrate.MAX_GROUPS - 1
    by_decade, overall = _coverage_by_decade(*_ages(6000, 1), interval)
    assert 0.88 <= overall <= 0.92
    assert all(0.8 <= c <= 0.98 for c in by_decade.values()), by_decade
    # ... where one global interval (the same residual quantiles for every face) does not:
    # too wide for children, too narrow for the elderly.
    pred, true = _ages(6000, 0)
    r = true - pred
    one = {"edges": [], "low": [-calibrate.conformal_quantile(-r, 0.95)],
           "high": [calibrate.conformal_quantile(r, 0.95)]}
    by_decade_global, _ = _coverage_by_decade(*_ages(6000, 1), one)
    assert min(by_decade_global.values()) < 0.8 and max(by_decade_global.values()) > 0.99

def test_fit_and_assess_report_shapes():
    pred, true = _ages(500, 2)
    probs, labels = _overconfident(500, 2.0, 3)
    result = {"age_pred": pred, "age": true, "gender_prob": probs[:, :2] / probs[:, :2].sum(
        -1, keepdims=True), "gender": np.minimum(labels, 1), "race_prob": probs, "race": labels}
    cal = calibrate.fit(result)
    rep = calibrate.assess(result, cal)
    assert set(rep["ece"]) == {"gender", "race"}
    assert rep["ece"]["race"]["after"] < rep["ece"]["race"]["before"]
    assert sum(d["n"] for d in rep["age_interval"]["by_decade"].values()) == 500
    assert 0.85 <= rep["age_interval"]["coverage"] <= 0.97


def test_decade_weights_cover_a_rare_age_pulled_towards_the_mean():
    """Teens (10 % of faces) predicted 6 years too old fall in the tail of the adults'
    predicted-age group: weighting each decade equally covers them far better."""
    rng = np.random.default_rng(4)

    def sample(n):
        teen = rng.random(n) < 0.1
        true = np.where(teen, rng.uniform(13, 19, n), rng.uniform(20, 40, n))
        pred = true + rng.normal(0, 3, n) + np.where(teen, 6.0, 0.0)
        return pred, true

    fitted = calibrate.fit_age_interval(*sample(4000))
    flat = dict(fitted)
    pred, true = sample(4000)
    r = true - pred
    group = np.searchsorted(np.asarray(fitted["edges"]), pred, side="right")
    flat["low"] = [-calibrate.conformal_quantile(-r[group == g], 0.95)
                   for g in range(len(fitted["low"]))]
    flat["high"] = [calibrate.conformal_quantile(r[group == g], 0.95)
                    for g in range(len(fitted["high"]))]
    test_pred, test_true = sample(4000)
    weighted, _ = _coverage_by_decade(test_pred, test_true, fitted)
    unweighted, _ = _coverage_by_decade(test_pred, test_true, flat)
    assert weighted[1] > unweighted[1] + 0.1 and weighted[1] >= 0.85, (weighted, unweighted)
    assert calibrate.decade_weights(np.array([1, 5, 15, 25, 26, 27])).tolist() == pytest.approx(
        [0.5, 0.5, 1.0, 1 / 3, 1 / 3, 1 / 3])


def test_the_level_half_scales_a_too_wide_shape_back_to_ninety_percent():
    """The weighting can lift the shape's coverage above the level (the faceres release: 0.921
    with the shape alone): the scale fitted on the other half brings it back, whatever the
    shape's width."""
    pred, true = _ages(4000, 5)
    shape = calibrate.group_quantiles(pred, true)
    too_wide = {**shape, "low": [2 * v for v in shape["low"]],
                "high": [2 * v for v in shape["high"]]}
    _, wide_coverage = _coverage_by_decade(*_ages(20000, 6), too_wide)
    assert wide_coverage > 0.99
    scale = calibrate.conformal_quantile(calibrate.interval_scores(too_wide, pred, true), 0.9)
    centre, half = calibrate.centre_and_half(too_wide)
    scaled = {**too_wide, "low": centre - scale * half, "high": centre + scale * half}
    _, coverage = _coverage_by_decade(*_ages(20000, 6), scaled)
    assert 0.4 < scale < 0.7 and 0.88 <= coverage <= 0.92, (scale, coverage)


def test_level_is_cross_fitted_on_faces_the_shape_did_not_see():
    pred, true = _ages(1000, 7)
    fitted = calibrate.fit_age_interval(pred, true)
    assert fitted["shape"] == calibrate.group_quantiles(pred, true)  # shape: every face
    folds = calibrate.cross_fit_folds(1000)
    assert np.bincount(folds).tolist() == [200] * calibrate.FOLDS
    scores = np.concatenate([calibrate.interval_scores(
        calibrate.group_quantiles(pred[folds != k], true[folds != k]), pred[folds == k],
        true[folds == k]) for k in range(calibrate.FOLDS)])
    assert fitted["scale"] == calibrate.conformal_quantile(scores, 0.9)
    centre, half = calibrate.centre_and_half(fitted["shape"])
    np.testing.assert_allclose(fitted["high"], centre + fitted["scale"] * half)
    # too few faces to hold any out: the shape's own level
    few = calibrate.fit_age_interval(pred[:50], true[:50])
    assert few["scale"] == 1.0 and few["low"] == pytest.approx(few["shape"]["low"])
