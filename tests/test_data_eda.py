"""EDA CLI on the synthetic UTKFace-format folder: counts match the file names."""

import json

from agr_jax.data import eda, synthetic, utkface


def test_eda_counts_figures_and_rejects(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "eda"
    assert eda.main([str(synthetic_dir), "--out", str(out)]) == 0
    stats = json.loads((out / "summary.json").read_text())
    labels = utkface.read_utkface(synthetic_dir).labels
    assert stats["num_images"] == len(labels) == 120
    assert stats["num_rejects"] == len(synthetic.MALFORMED)
    assert {r["file_name"] for r in stats["rejects"]} == set(synthetic.MALFORMED)
    assert sum(stats["gender"].values()) == sum(stats["race"].values()) == 120
    white_female = sum(1 for lab in labels if lab.race == 0 and lab.gender == 1)
    assert stats["race_x_gender"]["White"]["female"] == white_female
    assert sum(stats["age"]["per_decade"].values()) == 120
    for name in ("age_hist", "gender_counts", "race_counts", "race_x_gender"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "race x gender" in printed and "rejected" in printed
    assert "REJECT" in (out / "summary.txt").read_text()


def test_eda_missing_source_fails_clearly(tmp_path, capsys):
    assert eda.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
