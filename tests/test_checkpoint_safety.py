"""Workdirs and checkpoints: config conflicts, --overwrite, model mismatch, missing checkpoints."""

import json
import runpy
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agr_jax import configuration, evaluation, models, tasks
from agr_jax.train import checkpoint, workdir
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import create_train_state

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"
OPT = {"name": "adam", "learning_rate": 1e-3, "schedule": "constant"}


def base():
    return runpy.run_path(str(QUICKSTART))["get_config"]()


# --------------------------------------------------------------------------- workdir


def test_same_config_reuses_the_workdir(tmp_path):
    workdir.prepare(base(), tmp_path, overwrite=False)
    workdir.prepare(base(), tmp_path, overwrite=False)
    assert configuration.load(tmp_path).name == "quickstart"


def test_different_config_is_refused_and_names_the_keys(tmp_path):
    workdir.prepare(base(), tmp_path, overwrite=False)
    (tmp_path / "checkpoints").mkdir()
    changed = base()
    changed.optimizer.learning_rate = 0.01
    changed.model.width = 16
    with pytest.raises(workdir.WorkdirConflict) as err:
        workdir.prepare(changed, tmp_path, overwrite=False)
    message = str(err.value)
    assert "optimizer.learning_rate: 0.003 -> 0.01" in message
    assert "model.width: 8 -> 16" in message and "--overwrite" in message
    assert configuration.load(tmp_path).model.width == 8  # the saved config is untouched
    assert (tmp_path / "checkpoints").is_dir()


def test_execution_settings_may_change_when_resuming(tmp_path):
    workdir.prepare(base(), tmp_path, overwrite=False)
    resumed = base()
    resumed.parallel = "none"  # saved on several devices, resumed on one
    resumed.total_steps = 500  # a longer run
    resumed.log_every_steps = 7
    workdir.prepare(resumed, tmp_path, overwrite=False)
    assert configuration.load(tmp_path).total_steps == 500
    resumed.seed = 1  # what is trained: still refused
    with pytest.raises(workdir.WorkdirConflict, match="seed: 0 -> 1"):
        workdir.prepare(resumed, tmp_path, overwrite=False)


def test_run_started_before_a_new_base_key_still_resumes(tmp_path):
    path = configuration.save(base(), tmp_path)
    values = json.loads(path.read_text())
    del values["skip_nonfinite"]  # written by a version without this key
    path.write_text(json.dumps(values))
    workdir.prepare(base(), tmp_path, overwrite=False)  # same command: accepted
    changed = base()
    changed.skip_nonfinite = True
    path.write_text(json.dumps(values))
    with pytest.raises(workdir.WorkdirConflict, match="skip_nonfinite: False -> True"):
        workdir.prepare(changed, tmp_path, overwrite=False)


def test_overwrite_discards_the_run_but_keeps_data_caches(tmp_path):
    workdir.prepare(base(), tmp_path, overwrite=False)
    for name in ("checkpoints/4", "best/4", "tensorboard", "eval", "tfds/utk_face",
                 "synthetic_utkface"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    changed = base()
    changed.num_epochs = 1
    workdir.prepare(changed, tmp_path, overwrite=True)
    assert configuration.load(tmp_path).num_epochs == 1
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["config.json", "synthetic_utkface", "tfds"]


# --------------------------------------------------------------------------- checkpoints


def _state(width: int, stage_sizes=(1, 1), seed: int = 0, ema: bool = False):
    """A TrainState of the right structure without compiling anything (numpy leaves)."""
    model = models.build("ror", outputs=tasks.TaskSpec().output_sizes(), width=width,
                         stage_sizes=stage_sizes, head_hidden=(8,))
    abstract = jax.eval_shape(
        lambda: create_train_state(model, make_optimizer(OPT, 10), (16, 16, 3), 0, ema=ema)
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with a latest (with a grain iterator) and a best checkpoint of a width-4 RoR."""
    root = tmp_path_factory.mktemp("ckpt")
    state = _state(4)
    it = iter(grain.MapDataset.range(10).to_iter_dataset())
    next(it)
    ckpts = checkpoint.Checkpoints(root)
    ckpts.save_latest(3, state, it, {"step": 3, "val": {}})
    ckpts.save_best(3, state, {"loss": 1.5}, {"step": 3, "val": {"loss": 1.5}})
    ckpts.wait()
    ckpts.close()
    configuration.save(base(), root)
    return root, state


def test_restore_into_a_different_model_lists_the_parameters(saved):
    root, _ = saved
    other = _state(8)
    with pytest.raises(checkpoint.CheckpointMismatch) as err:
        checkpoint.restore_for_inference(root, other, which="best")
    message = str(err.value)
    assert "params/backbone/network_shortcut/kernel: checkpoint (1, 1, 4, 32) float32, " \
        "model (1, 1, 8, 64) float32" in message
    assert "47 mismatched parameter arrays" in message and "... and 22 more" in message
    assert "was the config changed" in message
    deeper = _state(4, stage_sizes=(1, 1, 1))
    it = iter(grain.MapDataset.range(10).to_iter_dataset())
    with pytest.raises(checkpoint.CheckpointMismatch, match="stage3.*missing in checkpoint"):
        checkpoint.Checkpoints(root).restore_latest(deeper, it)


def test_restore_with_ema_switched_on_names_the_missing_average(saved):
    root, _ = saved
    with pytest.raises(checkpoint.CheckpointMismatch, match="ema/params/.*missing in checkpoint"):
        checkpoint.restore_for_inference(root, _state(4, ema=True), which="best")


def test_restore_into_the_same_model_round_trips(saved):
    root, state = saved
    restored, meta = checkpoint.restore_for_inference(root, _state(4, seed=1), which="latest")
    assert meta["step"] == 3
    assert checkpoint.tree_sha256(restored) == checkpoint.tree_sha256(state)


def test_mismatches_reports_each_kind():
    saved = {"params": {"a": np.zeros((2, 3), np.float32), "gone": np.zeros(1, np.float32),
                        "b": np.zeros(4, np.float32)}}
    model = {"params": {"a": np.zeros((2, 5), np.float32), "new": np.zeros(2, np.float32),
                        "b": np.zeros(4, jnp.bfloat16)}}
    lines = checkpoint.mismatches(saved, model)
    assert lines == [
        "  params/a: checkpoint (2, 3) float32, model (2, 5) float32",
        "  params/b: checkpoint (4,) float32, model (4,) bfloat16",
        "  params/gone: in checkpoint (1,), not in this model",
        "  params/new: missing in checkpoint (model expects (2,))",
    ]


def test_describe_reports_step_best_and_digest(saved):
    root, state = saved
    info = checkpoint.describe(root)
    assert info["step"] == 3 and info["config_name"] == "quickstart"
    assert info["params_sha256"] == checkpoint.tree_sha256(state.params)
    assert info["param_count"] == sum(x.size for x in jax.tree.leaves(state.params))
    assert info["best_step"] == 3 and info["best_metric"] == {"val_loss": 1.5}


def test_tree_sha256_is_order_free_and_bit_exact():
    a = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.ones(2, np.int32)}
    b = {"y": np.ones(2, np.int32), "x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert checkpoint.tree_sha256(a) == checkpoint.tree_sha256(b)
    flipped = {**a, "x": a["x"].copy()}
    flipped["x"].view(np.uint32)[0, 0] ^= 1  # one bit of one float
    assert checkpoint.tree_sha256(flipped) != checkpoint.tree_sha256(a)
    assert checkpoint.tree_sha256({**a, "x": a["x"].reshape(3, 2)}) != checkpoint.tree_sha256(a)
    assert checkpoint.tree_sha256({**a, "y": a["y"].astype(np.uint32)}) != \
        checkpoint.tree_sha256(a)


def test_workdir_without_checkpoints_says_so(tmp_path):
    state = {"params": {"w": np.zeros(2, np.float32)}}
    with pytest.raises(FileNotFoundError, match="no checkpoints in this workdir; train first"):
        checkpoint.restore_for_inference(tmp_path, state)
    with pytest.raises(FileNotFoundError, match="no checkpoints in this workdir"):
        checkpoint.describe(tmp_path)
    # Only an interrupted save: a temporary directory, which does not count.
    (tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp-123").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.describe(tmp_path, "latest")


def test_evaluate_workdir_without_checkpoints_says_so_before_building(tmp_path):
    configuration.save(base(), tmp_path)  # a run that never reached its first checkpoint
    with pytest.raises(FileNotFoundError, match="no checkpoints in this workdir"):
        evaluation.evaluate_workdir(tmp_path)


def test_evaluate_a_folder_that_is_not_a_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        evaluation.evaluate_workdir(tmp_path)


def test_best_metric_is_read_from_json(saved):
    root, _ = saved
    assert json.loads(json.dumps(checkpoint.describe(root, "best")))["step"] == 3


def test_fault_hook_is_inert_unless_asked(monkeypatch):
    from agr_jax.train import faults

    monkeypatch.delenv(faults.ENV, raising=False)
    faults.maybe_kill("step", 3)  # no variable: nothing happens
    monkeypatch.setenv(faults.ENV, "save:4")
    faults.maybe_kill("step", 4)  # another point or step: nothing happens
    faults.maybe_kill("save", 5)
    monkeypatch.setenv(faults.ENV, "explode:4")
    with pytest.raises(ValueError, match="AGR_JAX_FAULT='explode:4'"):
        faults.maybe_kill("step", 4)
