"""Crash safety end to end: SIGKILL a training subprocess, restart it, compare the weights.

A tiny RoR (with dropout and augmentation) on 300 synthetic 16px faces (45 steps, a
checkpoint every 4). One uninterrupted reference run is shared; every killed-and-restarted
run must end with bit-identical parameters (and optimiser state, BN statistics, RNG).
Kills come from `AGR_JAX_FAULT` (train/faults.py): a real SIGKILL of the training process
at a chosen point, drawn from a fresh seed that every failure message names
(`AGR_JAX_TEST_KILL_SEED=N` replays one).
"""

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHEAP_XLA_FLAGS

from agr_jax.train import checkpoint, faults

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, EVERY = 3, 4  # ~240 train images // batch 16 = 15 steps/epoch
OVERRIDES = [
    "--config.data.image_size=16",
    "--config.model.width=4",
    "--config.model.stage_sizes=(1,)",  # one stage: half the compile time of two
    "--config.model.head_hidden=(16,)",
    "--config.model.dropout=0.2",  # so the per-step dropout RNG matters
    "--config.batch_size=16",
    "--config.eval_batch_size=64",
    f"--config.num_epochs={EPOCHS}",
    f"--config.checkpoint_every_steps={EVERY}",
    "--config.log_every_steps=5",
    "--config.optimizer.warmup_steps=0",
]


KILL_SEED_ENV = "AGR_JAX_TEST_KILL_SEED"


@pytest.fixture
def kill_seed() -> int:
    return int(os.environ.get(KILL_SEED_ENV) or random.randrange(10**6))


@contextlib.contextmanager
def named_in_failures(seed: int, kill: str):
    """Any exception raised inside carries the seed and the kill point drawn from it."""
    try:
        yield
    except BaseException as error:
        error.add_note(f"kill seed {seed} ({kill}); replay: {KILL_SEED_ENV}={seed}")
        raise


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Shared prepared data; later runs skip compiles through the session's persistent cache."""
    from agr_jax.data import prepare, synthetic

    root = tmp_path_factory.mktemp("resume")
    faces = root / "faces"
    synthetic.generate(faces, 300, seed=0, size=32)
    prepare.prepare(faces, root / "tfds", seed=0)
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["PYTHONPATH"] = str(ROOT)  # the compilation cache: tests/conftest.py's, inherited
    # XLA's cheapest CPU compile: every run here is compared only with runs compiled the same
    # way (the reference), and the first ones compile the train, eval and init programs.
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {CHEAP_XLA_FLAGS}".strip()
    data = [f"--config.data.dir={faces}", f"--config.data.tfds_dir={root / 'tfds'}"]
    return {"env": env, "root": root, "data": data}


def train(env, workdir: Path, fault: str | None = None, extra=()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agr_jax.train", "--config", str(ROOT / "configs/quickstart.py"),
           f"--workdir={workdir}", *OVERRIDES, *env["data"], *extra]
    run_env = dict(env["env"], **({faults.ENV: fault} if fault else {}))
    return subprocess.run(cmd, env=run_env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def resumed_from(proc: subprocess.CompletedProcess) -> int | None:
    match = re.search(r"resumed from step (\d+)", proc.stderr)
    return int(match.group(1)) if match else None


def complete_steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def reference(env):
    workdir = env["root"] / "reference"
    proc = train(env, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert resumed_from(proc) is None
    info = checkpoint.describe(workdir)
    assert info["step"] % EPOCHS == 0 and info["step"] > 30
    return workdir, info


def _kill_and_resume(env, reference, workdir: Path, fault: str) -> tuple[int, int]:
    killed = train(env, workdir, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = checkpoint.describe(workdir)["step"]  # the latest complete checkpoint is usable
    restarted = train(env, workdir)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    start = resumed_from(restarted)
    assert start == before, restarted.stderr[-3000:]
    info = checkpoint.describe(workdir)
    ref = reference[1]
    assert info["step"] == ref["step"]
    assert info["params_sha256"] == ref["params_sha256"]
    assert info["state_sha256"] == ref["state_sha256"]  # optimiser state, BN stats, RNG too
    return before, start


def test_kill_at_random_step_then_resume_is_bit_identical(env, reference, kill_seed):
    # >= 9: the save at step 8 waits for the one at 4, so a resume point always exists.
    kill_at = random.Random(kill_seed).randint(2 * EVERY + 1, reference[1]["step"] - 2)
    with named_in_failures(kill_seed, f"killed at step {kill_at}"):
        before, _ = _kill_and_resume(env, reference, env["root"] / f"kill_{kill_at}",
                                     f"step:{kill_at}")
        assert 0 < before <= kill_at


def test_kill_during_checkpoint_save_keeps_previous(env, reference, kill_seed):
    save_step = random.Random(kill_seed).choice(
        range(3 * EVERY, reference[1]["step"] - 2, EVERY))
    with named_in_failures(kill_seed, f"killed while saving step {save_step}"):
        workdir = env["root"] / f"kill_in_save_{save_step}"
        killed = train(env, workdir, f"save:{save_step}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        partial = list((workdir / "checkpoints").glob(f"{save_step}.orbax-checkpoint-tmp*"))
        assert partial, "no interrupted save left behind"
        previous = max(complete_steps(workdir))
        assert save_step - EVERY <= previous < save_step  # an epoch-end save may lie between
        assert checkpoint.describe(workdir)["step"] == previous
        restarted = train(env, workdir)
        assert restarted.returncode == 0, restarted.stderr[-3000:]
        assert resumed_from(restarted) == previous
        info = checkpoint.describe(workdir)
        assert info["params_sha256"] == reference[1]["params_sha256"]
        assert info["state_sha256"] == reference[1]["state_sha256"]


def test_checkpoint_info_cli(env, reference):
    workdir, ref = reference
    proc = subprocess.run(
        [sys.executable, "-m", "agr_jax.checkpoint_info", f"--workdir={workdir}"],
        env=env["env"], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["step"] == ref["step"] and info["config_name"] == "quickstart"
    assert info["params_sha256"] == ref["params_sha256"] and len(info["params_sha256"]) == 64
    assert info["param_count"] > 0
    per_epoch = ref["step"] // EPOCHS
    assert info["best_step"] % per_epoch == 0 and info["best_metric"]["val_loss"] > 0


def test_same_command_in_a_finished_workdir_resumes_not_retrains(env, reference):
    workdir, ref = reference
    proc = train(env, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert resumed_from(proc) == ref["step"]
    assert checkpoint.describe(workdir)["params_sha256"] == ref["params_sha256"]


def test_different_config_in_the_workdir_is_refused(env, reference):
    workdir, ref = reference
    proc = train(env, workdir, extra=["--config.optimizer.learning_rate=0.01"])
    assert proc.returncode != 0
    assert "optimizer.learning_rate: 0.003 -> 0.01" in proc.stderr
    assert "--overwrite" in proc.stderr
    assert checkpoint.describe(workdir)["state_sha256"] == ref["state_sha256"]  # untouched
