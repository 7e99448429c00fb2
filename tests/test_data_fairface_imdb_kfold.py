"""FairFace and IMDB-WIKI builders on small files in their formats; the k-fold protocol."""

import datetime

import numpy as np
import pytest
import simplejpeg

from agr_jax.data import fairface, imdb_wiki, pipeline, prepare, tfds_builders, utkface


def _jpeg(rng, size=24):
    return simplejpeg.encode_jpeg(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def fairface_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairface")
    rng = np.random.default_rng(0)
    header = "file,age,gender,race,service_test\n"
    rows = {"train": [], "val": []}
    for split, n in (("train", 30), ("val", 8)):
        (root / split).mkdir()
        for i in range(n):
            name = f"{split}/{i + 1}.jpg"
            (root / name).write_bytes(_jpeg(rng))
            age = fairface.AGE_BINS[i % len(fairface.AGE_BINS)]
            race = fairface.RACES[i % len(fairface.RACES)]
            rows[split].append(f"{name},{age},{'Male' if i % 2 else 'Female'},{race},True")
    rows["train"] += [
        "train/missing.jpg,20-29,Male,White,False",  # no image
        "train/1.jpg,20-29,Male,White,False",  # duplicate row
        "train/x1.jpg,25,Male,White,False",  # not a bin
        "train/x2.jpg,20-29,Female,Martian,False",  # unknown race
        "train/bad.jpg,20-29,Female,Indian,False",  # undecodable
    ]
    for name in ("x1", "x2"):
        (root / "train" / f"{name}.jpg").write_bytes(_jpeg(rng))
    (root / "train" / "bad.jpg").write_bytes(b"not a jpeg")
    for split, lines in rows.items():
        (root / f"fairface_label_{split}.csv").write_text(header + "\n".join(lines) + "\n")
    return root


def test_read_fairface_labels_and_rejects(fairface_root):
    result = fairface.read_fairface(fairface_root)
    assert len(result.examples) == 30 + 8 and len(result.rejects) == 5
    reasons = {r.file_name: r.reason for r in result.rejects}
    assert reasons["train/missing.jpg"].startswith("missing image")
    assert reasons["train/bad.jpg"].startswith(utkface.UNDECODABLE)
    assert "age bin '25'" in reasons["train/x1.jpg"]
    assert "race 'Martian'" in reasons["train/x2.jpg"]
    assert any(r.reason.startswith(utkface.DUPLICATE) for r in result.rejects)
    label = {lab.file_name: lab for lab in result.labels}["val/4.jpg"]  # i = 3
    assert (label.age_bin, label.age, label.gender, label.race) == (3, 25, 0, 3)
    assert fairface.AGE_BIN_EDGES[label.age_bin] <= label.age


def test_fairface_build_splits_and_info(fairface_root, tmp_path):
    report = prepare.prepare(fairface_root, tmp_path, dataset="fairface", seed=0)
    assert "fair_face" in report.data_dir
    assert report.split_sizes["test"] == 8  # the official val CSV
    assert report.split_sizes["train"] + report.split_sizes["validation"] == 30
    assert len(report.rejects) == 5
    info = tfds_builders.dataset_info(tmp_path)
    assert info["num_races"] == 7 and info["race_names"] == list(fairface.RACES)
    assert info["age_bin_edges"] == list(fairface.AGE_BIN_EDGES)
    assert "bin" in info["age_note"]
    test = tfds_builders.load_split(tmp_path, "test")
    assert sorted(test[i]["file_name"] for i in range(len(test)))[0].startswith("val/")
    batch = next(iter(pipeline.make_dataset(test, image_size=16, batch_size=4, train=False,
                                            seed=0)))
    assert batch["image"].shape == (4, 16, 16, 3)
    assert set(batch["age"].tolist()) <= set(map(float, fairface.AGE_CENTRES))


def test_fairface_spec_gets_seven_races(fairface_root, tmp_path):
    from conftest import make_tiny_config

    from agr_jax.train.loop import build_model_and_spec

    prepare.prepare(fairface_root, tmp_path, dataset="fairface")
    _, spec = build_model_and_spec(make_tiny_config(), tmp_path)
    assert spec.num_races == 7 and spec.output_sizes()["race"] == 7


def _datenum(year, month=6, day=1):
    return datetime.date(year, month, day).toordinal() + 366 + 0.25


@pytest.fixture(scope="module")
def imdb_root(tmp_path_factory):
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("imdb_crop")
    rng = np.random.default_rng(1)
    rows = []  # (path, dob, photo_taken, gender, face_score, second_face_score)
    for i in range(24):
        person = f"nm{i // 2:07d}"  # two photos per person
        path = f"{i % 3:02d}/{person}_rm{i}_1970-6-1_{2000 + i % 5}.jpg"
        rows.append((path, _datenum(1970), 2000 + i % 5, float(i % 2), 2.5, np.nan))
    rows += [
        ("00/nm9000001_a.jpg", _datenum(1980), 2010, 1.0, -np.inf, np.nan),  # no face
        ("00/nm9000002_a.jpg", _datenum(1980), 2010, 1.0, 0.5, np.nan),  # low score
        ("00/nm9000003_a.jpg", _datenum(1980), 2010, 1.0, 3.0, 1.2),  # second face
        ("00/nm9000004_a.jpg", _datenum(1980), 2010, np.nan, 3.0, np.nan),  # no gender
        ("00/nm9000005_a.jpg", _datenum(2015), 2010, 0.0, 3.0, np.nan),  # age -5
        ("00/nm9000006_a.jpg", _datenum(1980), 2010, 0.0, 3.0, np.nan),  # file missing
    ]
    for path, *_ in rows:
        if "nm9000006" not in path:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(_jpeg(rng))
    cols = list(zip(*rows, strict=True))
    savemat(root / "imdb.mat", {"imdb": {
        "full_path": np.array(cols[0], dtype=object),
        "dob": np.array(cols[1]), "photo_taken": np.array(cols[2], dtype=np.uint16),
        "gender": np.array(cols[3]), "face_score": np.array(cols[4]),
        "second_face_score": np.array(cols[5]),
        "name": np.array(["x"] * len(rows), dtype=object),
    }})
    return root


def test_birth_year_from_matlab_datenum():
    assert imdb_wiki.birth_year(723671.0) == 1981  # Matlab datenum(1981, 5, 5) = 723671
    assert imdb_wiki.birth_year(_datenum(1899, 12, 31)) == 1899


def test_read_imdb_wiki_filters_counted(imdb_root):
    result = imdb_wiki.read_imdb_wiki(imdb_root)
    assert len(result.examples) == 24
    counts = imdb_wiki.reject_counts(result)
    assert counts == {imdb_wiki.NO_FACE: 1, imdb_wiki.LOW_FACE_SCORE: 1,
                      imdb_wiki.SECOND_FACE: 1, imdb_wiki.NO_GENDER: 1, imdb_wiki.BAD_AGE: 1,
                      imdb_wiki.MISSING: 1}
    lab = result.examples[0][0]
    assert lab.race == -1 and lab.timestamp.startswith("nm")
    by_name = {lab.file_name: lab for lab in result.labels}
    first = by_name["00/nm0000000_rm0_1970-6-1_2000.jpg"]
    assert (first.age, first.gender) == (30, 1)  # gender 0.0 in the .mat = female
    loose = imdb_wiki.read_imdb_wiki(imdb_root, min_face_score=0.1)
    assert len(loose.examples) == 25


def test_imdb_wiki_build_groups_people(imdb_root, tmp_path):
    report = prepare.prepare(imdb_root, tmp_path, dataset="imdb_wiki", seed=0,
                             ratios=(0.5, 0.25, 0.25))
    assert sum(report.split_sizes.values()) == 24 and "imdb_wiki" in report.data_dir
    assert len(report.rejects) == 6
    people = {}
    for split in utkface.SPLITS:
        source = tfds_builders.load_split(tmp_path, split)
        for i in range(len(source)):
            assert source[i]["race"] == -1
            people.setdefault(source[i]["timestamp"], set()).add(split)
    assert all(len(s) == 1 for s in people.values())
    assert tfds_builders.dataset_info(tmp_path)["num_races"] == 5


def test_race_loss_skips_unlabelled():
    import jax.numpy as jnp

    from agr_jax import tasks

    spec = tasks.TaskSpec()
    out = {"age": jnp.zeros((2, 1)), "gender": jnp.zeros((2, 2)), "race": jnp.zeros((2, 5))}
    batch = {"age": jnp.array([30.0, 30.0]), "gender": jnp.array([0, 1]),
             "race": jnp.array([2, -1])}
    race = tasks.per_example_losses(out, batch, spec)["race"]
    assert float(race[0]) == pytest.approx(np.log(5)) and float(race[1]) == 0.0


def test_kfold_split_partitions_by_timestamp(synthetic_dir):
    labels = utkface.read_utkface(synthetic_dir, check_decode=False).labels
    tests = []
    for k in range(5):
        split = utkface.kfold_split(labels, 5, k, seed=3)
        assert sorted(sum(split.values(), [])) == list(range(len(labels)))
        stamps = {s: {labels[i].timestamp for i in idx} for s, idx in split.items()}
        assert not stamps["test"] & (stamps["train"] | stamps["validation"])
        assert not stamps["train"] & stamps["validation"]
        assert abs(len(split["test"]) - len(labels) / 5) <= 4
        assert 0 < len(split["validation"]) < len(split["train"])
        tests.append(set(split["test"]))
        assert split == utkface.kfold_split(labels, 5, k, seed=3)  # deterministic
    assert set().union(*tests) == set(range(len(labels)))
    assert sum(len(t) for t in tests) == len(labels)  # each image tested exactly once
    with pytest.raises(ValueError, match="fold"):
        utkface.kfold_split(labels, 5, 5)


def test_prepare_kfold_cli(synthetic_dir, tmp_path, capsys):
    assert prepare.main(["--data_dir", str(synthetic_dir), "--out", str(tmp_path),
                         "--folds", "4", "--fold", "1"]) == 0
    assert "fold1of4" in capsys.readouterr().out
    info = tfds_builders.dataset_info(tmp_path)
    assert info["settings"]["folds"] == 4 and info["settings"]["fold"] == 1
    labels = utkface.read_utkface(synthetic_dir).labels
    expected = utkface.kfold_split(labels, 4, 1, seed=0)
    test = tfds_builders.load_split(tmp_path, "test")
    assert sorted(test[i]["file_name"] for i in range(len(test))) == sorted(
        labels[i].file_name for i in expected["test"])
