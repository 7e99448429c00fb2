"""TFDS build (no TensorFlow) -> load_split round trip; prepare library and CLI."""

import json
import sys

import numpy as np
import pytest

from agr_jax.data import prepare, synthetic, tfds_builders, utkface


def test_tensorflow_not_installed_or_used(synthetic_tfds):
    tfds_builders.load_split(synthetic_tfds, "train")[0]
    assert "tensorflow" not in sys.modules


def test_round_trip_bytes_and_labels(synthetic_dir, synthetic_tfds):
    truth = {lab.file_name: (lab, data) for lab, data in utkface.read_utkface(
        synthetic_dir).examples}
    seen = {}
    stamps = {}
    for split in utkface.SPLITS:
        source = tfds_builders.load_split(synthetic_tfds, split)
        stamps[split] = set()
        for i in range(len(source)):
            rec = source[i]
            assert type(rec["image"]) is bytes and type(rec["file_name"]) is str
            assert type(rec["timestamp"]) is str
            for key in ("age", "gender", "race"):
                assert isinstance(rec[key], np.int32)
            label, data = truth[rec["file_name"]]
            assert rec["image"] == data
            assert (rec["age"], rec["gender"], rec["race"], rec["timestamp"]) == (
                label.age, label.gender, label.race, label.timestamp)
            seen[rec["file_name"]] = split
            stamps[split].add(rec["timestamp"])
    assert set(seen) == set(truth)
    assert not stamps["train"] & (stamps["validation"] | stamps["test"])
    assert not stamps["validation"] & stamps["test"]


def test_dataset_info_and_rejects_file(synthetic_tfds):
    info = tfds_builders.dataset_info(synthetic_tfds)
    assert info["num_examples"] == 120
    assert set(info["splits"]) == set(utkface.SPLITS)
    assert info["settings"]["seed"] == 0
    assert info["num_rejects"] == len(synthetic.MALFORMED)
    rejects = json.loads(open(info["rejects_file"]).read())
    assert {r["file_name"] for r in rejects["rejects"]} == set(synthetic.MALFORMED)


def test_prepare_reuses_and_separates_settings(synthetic_dir, tmp_path):
    first = prepare.prepare(synthetic_dir, tmp_path, seed=1, age_range=(10, 65))
    assert not first.reused
    assert all(10 <= r["age"] <= 65 for r in _records(tmp_path, "train"))
    assert first.num_age_excluded > 0
    assert sum(first.split_sizes.values()) == first.num_read - first.num_age_excluded
    again = prepare.prepare(synthetic_dir, tmp_path, seed=1, age_range=(10, 65))
    assert again.reused and again.data_dir == first.data_dir
    assert again.split_sizes == first.split_sizes
    assert [r.file_name for r in again.rejects] == [r.file_name for r in first.rejects]
    other = prepare.prepare(synthetic_dir, tmp_path, seed=2, ratios=(0.6, 0.2, 0.2))
    assert not other.reused and other.data_dir != first.data_dir
    # The pointer follows the latest build; the old one stays readable by path.
    assert tfds_builders.resolve_dir(tmp_path) == tfds_builders.resolve_dir(other.data_dir)
    assert len(tfds_builders.load_split(first.data_dir, "train")) == first.split_sizes["train"]


def _records(tfds_dir, split):
    source = tfds_builders.load_split(tfds_dir, split)
    return [source[i] for i in range(len(source))]


def test_prepare_cli_prints_rejects(synthetic_dir, tmp_path, capsys):
    code = prepare.main(["--data_dir", str(synthetic_dir), "--out", str(tmp_path),
                         "--ratios", "0.8,0.1,0.1", "--seed", "0"])
    assert code == 0
    out = capsys.readouterr().out
    for name in synthetic.MALFORMED:
        assert repr(name) in out
    assert "rejected 6" in out
    assert "splits: train" in out


def test_prepare_cli_bad_ratios(synthetic_dir, tmp_path):
    with pytest.raises(SystemExit):
        prepare.main(["--data_dir", str(synthetic_dir), "--out", str(tmp_path),
                      "--ratios", "0.8,0.3,0.1"])


def test_folder_source(synthetic_dir):
    source, result = prepare.folder_source(synthetic_dir)
    assert len(source) == 120 == len(result.examples)
    rec = source[0]
    assert set(rec) == set(tfds_builders.FEATURE_KEYS)
    assert isinstance(rec["age"], np.int32) and isinstance(rec["image"], bytes)
    young, _ = prepare.folder_source(synthetic_dir, age_range=(0, 20))
    assert all(young[i]["age"] <= 20 for i in range(len(young)))


def test_load_split_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="agr_jax.data.prepare"):
        tfds_builders.load_split(tmp_path, "train")


def test_prepared_pointer_is_never_seen_half_written(tmp_path):
    """Runs sharing a build rewrite and read `prepared.json` at once (a sweep of runs on one
    machine): a reader must always parse a whole file."""
    import subprocess

    pointer = tmp_path / tfds_builders.PREPARED_POINTER
    prepare.write_json_atomic(pointer, {"path": "x", "settings": {"n": -1}})
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from agr_jax.data import prepare\n"
        "for i in range(3000):\n"
        "    prepare.write_json_atomic(Path(sys.argv[1]), {'path': 'x', 'settings': {'n': i}})"
    ), str(pointer)])
    reads = 0
    while writer.poll() is None or reads < 100:
        assert json.loads(pointer.read_text())["path"] == "x"
        reads += 1
    assert writer.wait() == 0
    assert json.loads(pointer.read_text())["settings"]["n"] == 2999
    assert [p.name for p in tmp_path.iterdir()] == [pointer.name]  # no temporary left over
