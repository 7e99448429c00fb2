"""Synthetic UTKFace-format data: determinism, naming, visible labels, CLI."""

import numpy as np
import simplejpeg

from agr_jax.data import synthetic, utkface


def test_deterministic_and_parseable(tmp_path):
    a = synthetic.generate(tmp_path / "a", 30, seed=5, size=32)
    b = synthetic.generate(tmp_path / "b", 30, seed=5, size=32)
    c = synthetic.generate(tmp_path / "c", 30, seed=6, size=32)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    assert [p.name for p in a] != [p.name for p in c]
    labels = [utkface.parse_name(p.name) for p in a]
    assert len(labels) == 30
    # Some timestamps are shared by several images.
    stamps = [lab.timestamp for lab in labels]
    assert len(set(stamps)) < len(stamps)
    img = simplejpeg.decode_jpeg(a[0].read_bytes())
    assert img.shape == (32, 32, 3)


def test_malformed_files_are_rejected(tmp_path):
    synthetic.generate(tmp_path, 10, seed=0, size=32, with_malformed=True)
    result = utkface.read_utkface(tmp_path)
    assert len(result.examples) == 10
    assert {r.file_name for r in result.rejects} == set(synthetic.MALFORMED)


def test_labels_are_visible():
    rng = np.random.default_rng(0)
    n = 300
    ages = rng.integers(1, 91, n)
    genders = rng.integers(0, 2, n)
    races = rng.integers(0, 5, n)
    imgs = np.stack([synthetic.render(int(a), int(g), int(r), rng, 48)
                     for a, g, r in zip(ages, genders, races, strict=True)]).astype(float)
    # Gender: red vs blue in the top rows (background).
    top = imgs[:, :4].mean(axis=(1, 2))
    pred_gender = (top[:, 0] > top[:, 2]).astype(int)
    assert (pred_gender == genders).mean() > 0.99
    # Age: the number of bright pixels grows with age.
    bright = (imgs.min(axis=-1) > 150).sum(axis=(1, 2))
    corr = np.corrcoef(bright[races == 0], ages[races == 0])[0, 1]
    assert corr > 0.95


def test_cli(tmp_path, capsys):
    synthetic.main(["--out", str(tmp_path), "--num", "7", "--seed", "1", "--size", "32"])
    assert len(list(tmp_path.glob("*.jpg"))) == 7
    assert "wrote 7 images" in capsys.readouterr().out
