"""benchmarks/align_check.py's statistics: agreement and paired differences."""

import numpy as np
import pytest

from benchmarks import align_check


def _records(genders, races, ages):
    return [{"gender": g, "race": r, "age": a} for g, r, a in zip(genders, races, ages,
                                                                    strict=True)]


def test_agreement_counts_matching_labels_and_close_ages():
    a = _records(["m", "f", "m", "f"], ["W", "B", "W", "A"], [20, 30, 40, 50])
    b = _records(["m", "m", "m", "f"], ["W", "B", "I", "I"], [24, 36, 40, 50])
    got = align_check.agreement(a, b)
    assert got == {"gender": 0.75, "race": 0.5, "age_within_5": 0.75,
                   "age_mean_abs_diff": 2.5}
    assert align_check.agreement([], []) == {}


def test_paired_differences_are_b_minus_a_with_an_interval_around_them():
    n = 400
    rng = np.random.default_rng(0)
    truth_g = rng.choice(["m", "f"], n)
    truth_r = rng.choice(["W", "B"], n)
    ages = rng.uniform(10, 70, n)
    a = _records(truth_g, truth_r, ages + 2.0)  # all labels right, 2 years off
    wrong = np.arange(n) < n // 10  # b gets a tenth of the genders wrong, ages 3 years off
    b = _records(np.where(wrong, np.where(truth_g == "m", "f", "m"), truth_g), truth_r,
                 ages - 3.0)
    labels = {"age": ages, "race": np.zeros(n, int), "gender_name": list(truth_g),
              "race_name": list(truth_r)}
    d = align_check.paired_differences(a, b, labels, resamples=500)
    assert d["gender_acc"]["difference"] == pytest.approx(-0.1)
    lo, hi = d["gender_acc"]["ci95"]
    assert lo < -0.1 < hi and hi < 0  # a real difference: the interval excludes zero
    assert d["race_acc"] == {"difference": 0.0, "ci95": [0.0, 0.0]}
    assert d["age_mae"]["difference"] == pytest.approx(1.0)
