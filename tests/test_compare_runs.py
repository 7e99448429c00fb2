"""benchmarks/compare_runs.py: the recipe comparison table read from evaluation reports."""

import json

import pytest

from benchmarks import compare_runs


def _run(tmp_path, name, seed, gender, others, minutes):
    w = tmp_path / name
    (w / "eval").mkdir(parents=True)
    (w / "config.json").write_text(json.dumps({"seed": seed, "model": {"name": "mobilenet"}}))
    (w / "metrics.jsonl").write_text(
        json.dumps({"step": 20, "time": 1000.0}) + "\n"
        + json.dumps({"step": 40, "time": 1000.0 + 60 * minutes}) + "\n")
    race = {"per_class": {c: {"recall": others if c == "Others" else 0.9}
                          for c in ("White", "Black", "Asian", "Indian", "Others")}}
    (w / "eval" / "test.json").write_text(json.dumps({
        "n": 10, "checkpoint_step": 40, "flip_tta": True, "shift_tta": 3,
        "gender_acc": gender, "race_acc": 0.85, "race_macro_f1": 0.76, "age_mae": 5.0,
        "age_cs5": 0.6, "race": race}))
    return w


def test_rows_group_means_and_the_markdown_table(tmp_path, capsys):
    a = _run(tmp_path, "a", 0, 0.90, 0.20, 30)
    b = _run(tmp_path, "b", 1, 0.94, 0.40, 40)
    c = _run(tmp_path, "c", 0, 0.92, 0.30, 50)
    out = tmp_path / "rows.json"
    assert compare_runs.main(["--group", f"new={a},{b}", "--group", f"old={c}",
                              "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "**new, mean of 2**" in text and "0.9200" in text and "0.300" in text
    assert "| 18 | 30.0 |" in text  # flip x 3x3 shifts; minutes from metrics.jsonl
    rows = json.loads(out.read_text())
    assert rows["new"]["mean"]["others_recall"] == pytest.approx(0.30)
    assert "mean" not in rows["old"] and rows["old"]["runs"][0]["seed"] == 0


def test_a_run_without_its_report_names_the_command(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(FileNotFoundError, match="agr_jax.evaluate --workdir"):
        compare_runs.run_row(tmp_path / "w", "test")
    with pytest.raises(SystemExit, match="NAME=W1"):
        compare_runs.main(["--group", "nothing"])
