"""Split shares a TFDS build cannot make are refused with the reason: a zero share before any
data is read, a share that leaves a split empty for this data before TFDS writes a shard
(TFDS itself fails only at the end, with "No examples were yielded")."""

import json

import pytest

from agr_jax.data import prepare


def test_a_zero_share_is_refused_before_the_data_is_read(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--ratios: the test share is 0 in \(0.9, 0.1, 0.0\)"):
        prepare.prepare(tmp_path / "no_such_folder", tmp_path / "out", ratios=(0.9, 0.1, 0.0))
    assert not (tmp_path / "out").exists()
    code = prepare.main(["--data_dir", str(tmp_path / "no_such_folder"), "--out",
                         str(tmp_path / "out"), "--ratios", "0.9,0.1,0"])
    assert code == 2 and "error: --ratios: the test share is 0" in capsys.readouterr().err


def test_k_fold_needs_no_test_share(synthetic_dir, tmp_path):
    report = prepare.prepare(synthetic_dir, tmp_path, ratios=(0.8, 0.2, 0.0), folds=4, fold=1)
    assert all(report.split_sizes[s] > 0 for s in ("train", "validation", "test"))


def test_a_share_too_small_for_the_data_is_refused_before_tfds_writes(synthetic_dir, tmp_path):
    with pytest.raises(ValueError) as e:
        prepare.prepare(synthetic_dir, tmp_path, ratios=(0.99, 0.005, 0.005))
    message = str(e.value)
    assert "(0.99, 0.005, 0.005)" in message and "config.data.split_ratios" in message
    assert "validation" in message and "no examples of the 120 kept" in message
    assert not list(tmp_path.rglob("*.array_record*"))  # no shard written
    assert not (tmp_path / "prepared.json").exists()
    # The same data with shares it can fill builds, and reports its sizes.
    report = prepare.prepare(synthetic_dir, tmp_path, ratios=(0.8, 0.1, 0.1))
    assert sum(report.split_sizes.values()) == 120
    assert json.loads((tmp_path / "prepared.json").read_text())["settings"]["ratios"] == [
        0.8, 0.1, 0.1]
