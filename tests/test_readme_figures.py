"""README's release figures and the model cards are what the shipped release files say:
`python -m agr_jax.readme_figures --check` fails on drift, `--write` fixes it."""

import json
import re
import shutil

import pytest

from agr_jax import readme_figures as figures
from agr_jax.inference import release


def _no_record():
    return None


def test_readme_and_cards_agree_with_the_release_files():
    differ, _ = figures.differences(record=_no_record)
    assert not differ, f"run python -m agr_jax.readme_figures --write: {differ}"


def test_blocks_carry_the_evaluation_figures():
    default, fast = figures.load("default"), figures.load("fast")
    ev = default["evaluation"]
    text = figures.released_paragraph(default)
    assert f"gender {ev['gender_acc']:.3f}" in text and f"{ev['age_mae']:.2f} years" in text
    coverage = ev["calibration_report"]["age_interval"]["coverage"]
    assert f"cover {coverage:.3f}" in text
    rows = figures.release_rows(default, fast)
    # the precision the files declare: float16 weights, model.json's compute dtype
    assert f"float16 weights computing in {fast['model']['compute_dtype']}" in rows
    assert f"{fast['evaluation']['race_acc']:.3f}" in rows


def test_check_finds_a_changed_figure_and_write_restores_it(tmp_path):
    readme = tmp_path / "README.md"
    good = figures.README.read_text()
    ev = figures.load("default")["evaluation"]
    wrong = good.replace(f"gender {ev['gender_acc']:.3f}, race", "gender 0.999, race", 1)
    assert wrong != good
    readme.write_text(wrong)
    differ, wanted = figures.differences(readme, record=_no_record)
    assert "README.md block released-paragraph" in differ
    assert wanted[readme] == good


def test_a_stale_model_card_is_found(tmp_path, monkeypatch):
    for folder in release.RELEASES.values():
        shutil.copytree(figures.README.parent / "agr_jax" / folder, tmp_path / folder)
    monkeypatch.setattr(release, "released_dir",
                        lambda name="default": tmp_path / release.RELEASES[name])
    card = tmp_path / release.RELEASES["fast"] / release.CARD
    card.write_text(card.read_text().replace("## Intended use", "## Intended use (edited)"))
    differ, _ = figures.differences(record=_no_record)
    assert differ == [str(card)]


def test_a_missing_block_is_an_error():
    with pytest.raises(ValueError, match="generated:fast-cost"):
        figures.render("no markers here", {"fast-cost": "x"}, None)


def test_example_record_is_the_shipped_release_on_the_astronaut():
    pytest.importorskip("skimage", reason=f"the README's photo: {figures.SKIMAGE}")
    record = figures.record_lines(figures.example_record())
    text = figures.README.read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(figures.EXAMPLE_COMMAND))
    assert "\n".join(lines[at + 1:at + 3]) == record
    caption = figures._marked("example-caption").search(text)
    assert caption and caption.group(2) == figures.record_caption(figures.example_record())
    interval = json.loads(re.search(r'"age_interval": (\[[^]]*\])', record).group(1))
    calibration = json.loads((release.released_dir() / release.MODEL_JSON).read_text())
    assert calibration["calibration"]["age_interval"]["method"].startswith("Mondrian")
    assert interval[0] < float(re.search(r'"age": ([0-9.]+)', record).group(1)) < interval[1]
