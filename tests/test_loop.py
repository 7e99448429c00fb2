"""End to end on a tiny config: train -> checkpoints -> resume -> evaluate, and the CLIs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CHEAP_XLA_FLAGS

from agr_jax import evaluation
from agr_jax.train import checkpoint
from agr_jax.train.input import load_split
from agr_jax.train.loop import train_and_evaluate
from agr_jax.train.metric_writer import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint_steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / checkpoint.LATEST_DIR).iterdir())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run shared by the tests below (2 epochs of 6 steps)."""
    from conftest import make_tiny_config

    workdir = tmp_path_factory.mktemp("run")
    config = make_tiny_config()
    val = train_and_evaluate(config, workdir)
    steps_per_epoch = len(load_split(workdir / "tfds", "train")) // config.batch_size
    return config, workdir, val, steps_per_epoch


def test_training_writes_checkpoints_metrics_and_config(trained):
    config, workdir, val, spe = trained
    assert json.loads((workdir / "config.json").read_text())["model"]["width"] == 4
    assert sorted(int(p.name) for p in (workdir / checkpoint.LATEST_DIR).iterdir()) == [
        spe,
        2 * spe,
    ]
    assert len(list((workdir / checkpoint.BEST_DIR).iterdir())) == 1
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows if "val/loss" in r] == [spe, 2 * spe]
    assert any("train/images_per_sec" in r for r in rows)
    assert list((workdir / "tensorboard").iterdir())
    assert set(val) >= {"loss", "age_mae", "gender_acc", "race_acc", "n"}
    assert val["n"] == len(load_split(workdir / "tfds", "validation"))


def test_resume_continues_from_latest_checkpoint(trained, tmp_path):
    import shutil

    config, workdir, _, spe = trained
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / checkpoint.LATEST_DIR / str(2 * spe))  # as if killed in epoch 2
    train_and_evaluate(config, copy)
    steps = [r["step"] for r in read_metrics(copy) if "val/loss" in r]
    assert steps == [spe, 2 * spe, 2 * spe]  # epoch 2 validated again after resuming at spe
    assert _checkpoint_steps(copy) == [spe, 2 * spe]


def test_evaluate_workdir_reports_required_keys(trained):
    workdir = trained[1]
    report = evaluation.evaluate_workdir(workdir, split="test")
    saved = json.loads((workdir / "eval" / "test.json").read_text())
    for key in ("age_mae", "gender_acc", "race_acc", "n", "baseline_age_mae"):
        assert key in saved and np.isfinite(saved[key])
    assert saved["n"] == report["n"] > 0
    assert 0 <= saved["gender_acc"] <= 1


def test_evaluate_folder_lists_skipped_files(trained, synthetic_dir):
    workdir = trained[1]
    report = evaluation.evaluate_workdir(workdir, data_dir=synthetic_dir)
    assert report["n"] == 120
    assert report["skipped"] and all(s["reason"] for s in report["skipped"])
    assert (workdir / "eval" / f"{synthetic_dir.name}.json").exists()


def test_evaluate_without_checkpoint_says_so(tmp_path, tiny_config):
    from agr_jax import configuration

    configuration.save(tiny_config(), tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        evaluation.evaluate_workdir(tmp_path)


@pytest.mark.slow
def test_cli_train_with_overrides_then_evaluate(tmp_path):
    workdir = tmp_path / "cli"
    common = [sys.executable, "-m"]
    train = common + [
        "agr_jax.train",
        "--config",
        str(ROOT / "configs" / "quickstart.py"),
        "--workdir",
        str(workdir),
        "--config.total_steps=3",
        "--config.data.synthetic_num=160",
        "--config.data.image_size=32",
        "--config.model.width=4",
        "--config.model.stage_sizes=(1,1)",
        "--config.batch_size=16",
        "--config.optimizer.warmup_steps=0",
    ]
    # XLA's cheapest CPU compile: this checks the CLIs' plumbing, not the values they reach
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {CHEAP_XLA_FLAGS}"}
    subprocess.run(train, check=True, cwd=ROOT, capture_output=True, timeout=300, env=env)
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["total_steps"] == 3 and saved["batch_size"] == 16
    out = subprocess.run(
        common + ["agr_jax.evaluate", "--workdir", str(workdir)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    ).stdout
    assert "gender_acc" in out and "baseline_age_mae" in out
    assert json.loads((workdir / "eval" / "test.json").read_text())["n"] > 0
