"""Calibration: temperature scaling recovers a known temperature and lowers ECE; the age
interval (Mondrian split conformal) holds its level in every predicted-age group, its bounds
are the finite-sample quantiles, its guarantee holds over calibration draws, a pathological
group stays sane, and decade weighting covers rare ages better."""

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


def _covered(pred, true, interval):
    bounds = calibrate.age_interval(pred, interval)
    return (true >= bounds[:, 0]) & (true <= bounds[:, 1]), bounds[:, 1] - bounds[:, 0]


def _mondrian_of(interval, pred):
    """The Mondrian group index of each predicted age."""
    uppers = [g["to_age"] for g in interval["groups"][:-1]]
    return np.searchsorted(np.asarray(uppers), pred, side="right")


def test_every_mondrian_group_holds_the_level_on_new_faces():
    interval = calibrate.fit_age_interval(*_ages(6000, 0))
    groups = interval["groups"]
    assert len(groups) > 3 and all(g["faces"] >= calibrate.MIN_GROUP for g in groups)
    assert interval["shape_faces"] + interval["calibration_faces"] == 6000
    pred, true = _ages(40000, 1)
    inside, width = _covered(pred, true, interval)
    assert 0.89 <= inside.mean() <= 0.92
    which = _mondrian_of(interval, pred)
    by_group = [inside[which == m].mean() for m in range(len(groups))]
    # One calibration draw: each group's coverage varies about the level by ~2 points
    # (binomial, ~250 faces); the average over draws is the next test's business.
    assert all(0.84 <= c <= 0.96 for c in by_group), by_group
    # ... where one interval for every face (the same residual quantiles) misses the groups:
    # far too wide for children, too narrow for the elderly.
    p0, t0 = _ages(6000, 0)
    r = t0 - p0
    one = {"edges": [], "low": [-calibrate.conformal_quantile(-r, 0.95)],
           "high": [calibrate.conformal_quantile(r, 0.95)]}
    flat, _ = _covered(pred, true, one)
    flat_by_group = [flat[which == m].mean() for m in range(len(groups))]
    assert flat_by_group[0] > 0.99 and flat_by_group[-1] < 0.8, flat_by_group
    # adaptive: the youngest group's intervals are far narrower than the oldest's
    assert width[which == 0].mean() < 0.4 * width[which == len(groups) - 1].mean()
    bounds = calibrate.age_interval(pred, interval)
    assert (bounds[:, 0] <= pred).all() and (pred <= bounds[:, 1]).all()


def test_each_bound_is_the_finite_sample_quantile_of_the_calibration_half():
    pred, true = _ages(3000, 2)
    fitted = calibrate.fit_age_interval(pred, true)
    in_shape = calibrate.halves(3000)
    assert in_shape.sum() == 1500
    assert fitted["shape"] == calibrate.shape_quantiles(pred[in_shape], true[in_shape])
    scores = calibrate.interval_scores(fitted["shape"], pred[~in_shape], true[~in_shape])
    group = calibrate.group_of(fitted["edges"], pred[~in_shape])
    mondrian = calibrate.merge_groups(np.bincount(group, minlength=len(fitted["low"])),
                                      calibrate.MIN_GROUP)
    centre, half = calibrate.centre_and_half(fitted["shape"])
    for m, g in enumerate(fitted["groups"]):
        s = np.sort(scores[mondrian[group] == m])
        k = int(np.ceil((len(s) + 1) * 0.95))  # the (n + 1) correction
        assert g["upper_scale"] == s[k - 1] and g["lower_scale"] == np.sort(-s)[k - 1]
        members = mondrian == m
        np.testing.assert_allclose(np.asarray(fitted["high"])[members],
                                   np.maximum(centre + s[k - 1] * half, 0)[members])
    # the calibration half's labels never reach the shape
    moved = true.copy()
    moved[~in_shape] += 5
    assert calibrate.fit_age_interval(pred, moved)["shape"] == fitted["shape"]


def test_coverage_guarantee_holds_on_average_over_calibration_draws():
    """Split conformal's promise: over calibration sets, a new face is covered with
    probability >= 0.9 (and <= 0.9 + 2 / (n + 1) per tail pair); one Mondrian group here."""
    rng = np.random.default_rng(3)
    covered = []
    for _ in range(300):
        true = rng.uniform(20, 40, 520)
        pred = true + rng.standard_t(3, 520) * 3
        fitted = calibrate.fit_age_interval(pred, true)
        assert len(fitted["groups"]) == 1
        new_true = rng.uniform(20, 40, 2000)
        inside, _ = _covered(new_true + rng.standard_t(3, 2000) * 3, new_true, fitted)
        covered.append(inside.mean())
    n = fitted["calibration_faces"]
    assert 0.9 - 0.003 <= np.mean(covered) <= 0.9 + 2 / (n + 1) + 0.003, np.mean(covered)


def test_a_pathological_group_stays_sane():
    """One 95-year-old predicted 21 among 20-somethings: decade weighting gives that single
    face the weight of a whole decade, so its group's weighted 95 % quantile would sit at
    +74 years; the shape is clipped to MAX_SPREAD times the pooled offsets instead."""
    rng = np.random.default_rng(4)
    true = np.concatenate([rng.uniform(18, 30, 1200), rng.uniform(30, 60, 800), [95.0]])
    pred = true + rng.normal(0, 3, len(true))
    pred[-1] = 21.0
    r, w = true - pred, calibrate.decade_weights(true)
    young = (pred > 19) & (pred < 23)
    assert calibrate.weighted_quantile(r[young], w[young], 0.95) > 70  # what the cap stops
    pooled = np.quantile(r[calibrate.halves(len(true))], 0.95)
    for seed_shift in range(2):  # the outlier in either half
        order = np.roll(np.arange(len(true)), seed_shift * 7)
        fitted = calibrate.fit_age_interval(pred[order], true[order])
        assert max(fitted["shape"]["high"]) <= calibrate.MAX_SPREAD * pooled * 1.2 + 1
        _, width = _covered(pred, true, fitted)
        assert width.max() < 40, width.max()


def test_merge_groups_floors_the_group_size():
    assert calibrate.merge_groups(np.array([50, 300, 100, 100, 60]), 250).tolist() == [
        0, 0, 1, 1, 1]
    assert calibrate.merge_groups(np.array([10, 10]), 250).tolist() == [0, 0]


def test_fit_and_assess_report_shapes():
    pred, true = _ages(800, 2)
    probs, labels = _overconfident(800, 2.0, 3)
    result = {"age_pred": pred, "age": true, "gender_prob": probs[:, :2] / probs[:, :2].sum(
        -1, keepdims=True), "gender": np.minimum(labels, 1), "race_prob": probs, "race": labels}
    cal = calibrate.fit(result)
    rep = calibrate.assess(result, cal)
    assert set(rep["ece"]) == {"gender", "race"}
    assert rep["ece"]["race"]["after"] < rep["ece"]["race"]["before"]
    assert sum(d["n"] for d in rep["age_interval"]["by_decade"].values()) == 800
    assert rep["age_interval"]["groups"] == cal["age_interval"]["groups"]
    assert 0.85 <= rep["age_interval"]["coverage"] <= 0.97


def test_decade_weights_favour_rare_decades_with_a_floor():
    """Weights (faces of the decade, at least DECADE_FLOOR) ** -DECADE_POWER: the weighting
    only shapes the interval (its benefit, measured on the releases' validation faces, is in
    calibrate.py's docstring); the guarantee comes from the calibration half."""
    true = np.array([5] * 40 + [25] * 80 + [105])
    w = calibrate.decade_weights(true)
    power, floor = calibrate.DECADE_POWER, calibrate.DECADE_FLOOR
    assert w[0] == pytest.approx(40.0 ** -power) and w[40] == pytest.approx(80.0 ** -power)
    assert w[-1] == pytest.approx(float(floor) ** -power)  # one centenarian: floored
    assert calibrate.decade_weights(np.array([1, 5, 15, 25, 26, 27]), 1.0, 1).tolist() == (
        pytest.approx([0.5, 0.5, 1.0, 1 / 3, 1 / 3, 1 / 3]))
