"""Data parallelism (train/parallel.py) on simulated CPU devices, in subprocesses.

The device count is fixed when JAX starts, so every multi-device run is a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`; this pytest process keeps its own
(usually one) device for the restores. Runs are shared between tests through module fixtures:
- `eight_devices`: tests/parallel_worker.py: 20 steps of none / shard_map / pmap on the same
  global batches (+ trace and compile counts), then a short shard_map training run through
  the real loop under `jax.transfer_guard("disallow")`, checkpointed on 8 devices.
- `multi_host`: 2 processes x 2 devices through `jax.distributed` (gloo) train 3 steps,
  checkpoint, restart, restore and train to 6; a 1 process x 4 devices run does 6 straight.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from agr_jax import configuration
from configs import quickstart

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5
TIMEOUT = 600


def _env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }


def _check(proc: subprocess.CompletedProcess | subprocess.Popen, log: str) -> None:
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{log[-6000:]}"


def _config(synthetic_dir, synthetic_tfds, **overrides):
    c = quickstart.get_config()
    c.data.dir, c.data.tfds_dir, c.data.image_size = str(synthetic_dir), str(synthetic_tfds), 16
    # One stage: a conv net with BatchNorm, shortcuts and heads is all these parity checks
    # need, and it compiles (init, train and eval steps) in about half the time of two.
    c.model.width, c.model.stage_sizes, c.model.head_hidden = 4, (1,), (16,)
    c.batch_size, c.eval_batch_size, c.log_every_steps = 16, 20, 2
    c.checkpoint_every_steps = 3
    # Constant SGD: a run restarted at step 3 follows the same schedule as a straight run,
    # and rounding noise is not amplified the way Adam's per-coordinate scaling does.
    c.optimizer.update(name="sgd", learning_rate=0.05, schedule="constant", warmup_steps=0)
    c.update_from_flattened_dict(overrides)
    return c


def _flags(config) -> list[str]:
    """The config as `--config.key=value` overrides of configs/quickstart.py."""
    out = []
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            out += [f"--config.{key}.{k}={_flag_value(v)}" for k, v in value.items()
                    if not isinstance(v, dict) and v is not None]
        elif value is not None:
            out.append(f"--config.{key}={_flag_value(value)}")
    return out


def _flag_value(v) -> str:
    return str(tuple(v)) if isinstance(v, list | tuple) else str(v)


def _restore_params(*workdirs: Path) -> list[tuple[dict, dict]]:
    """Latest checkpoints of runs with one config, restored on this process' default device."""
    from agr_jax.train.checkpoint import restore_for_inference
    from agr_jax.train.loop import build_model_and_spec
    from agr_jax.train.optim import make_optimizer
    from agr_jax.train.state import create_train_state

    config = configuration.load(workdirs[0])
    model, _ = build_model_and_spec(config, config.data.tfds_dir)
    size = int(config.data.image_size)
    template = create_train_state(
        model, make_optimizer(config.optimizer, 10), (size, size, 3), int(config.seed)
    )
    out = []
    for workdir in workdirs:
        state, meta = restore_for_inference(workdir, template, which="latest")
        out.append((jax.device_get(state.params), meta))
    return out


def _rel_errors(a: dict, b: dict) -> dict[str, float]:
    leaves_a = jax.tree.leaves_with_path(a)
    leaves_b = jax.tree.leaves(b)
    return {
        jax.tree_util.keystr(k): float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12))
        for (k, x), y in zip(leaves_a, leaves_b, strict=True)
    }


# ---------------------------------------------------------------------------- 8 devices


@pytest.fixture(scope="module")
def eight_devices(synthetic_dir, synthetic_tfds, tmp_path_factory):
    out = tmp_path_factory.mktemp("eight_devices")
    config = _config(synthetic_dir, synthetic_tfds, total_steps=3, parallel="shard_map")
    (out / "config.json").write_text(config.to_json())
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "parallel_worker.py"), str(out),
         str(out / "config.json")],
        env=_env(8), capture_output=True, text=True, timeout=TIMEOUT,
    )
    _check(proc, proc.stdout + proc.stderr)
    report = json.loads((out / "modes.json").read_text())
    arrays = dict(np.load(out / "modes.npz"))
    return report, arrays, out / "workdir", proc.stderr


def test_modes_give_the_same_parameters(eight_devices):
    report, arrays, _, _ = eight_devices
    assert report["none"]["num_devices"] == 1
    assert report["shard_map"]["num_devices"] == report["pmap"]["num_devices"] == 8
    names = [k.split("/", 2)[2] for k in arrays if k.startswith("none/params/")]
    for mode in ("shard_map", "pmap"):
        assert report[mode]["step"] == 20
        worst = max(
            np.linalg.norm(arrays[f"{mode}/params/{n}"] - arrays[f"none/params/{n}"])
            / np.linalg.norm(arrays[f"none/params/{n}"])
            for n in names
        )
        assert worst < RTOL, f"{mode}: worst relative parameter difference {worst:.2e}"
        np.testing.assert_allclose(report[mode]["losses"], report["none"]["losses"], rtol=1e-4)
        for key in ("age_pred", "loss", "race_prob"):  # padded, sharded, gathered eval
            assert arrays[f"{mode}/eval/{key}"].shape[0] == 16
            np.testing.assert_allclose(
                arrays[f"{mode}/eval/{key}"], arrays[f"none/eval/{key}"], rtol=1e-4, atol=1e-5
            )
    assert report["none"]["losses"][-1] < report["none"]["losses"][0]  # it did train


def test_no_retrace_or_recompile_after_first_step(eight_devices):
    report, _, _, _ = eight_devices
    for mode in ("none", "shard_map", "pmap"):
        assert report[mode]["traces"] == {"train": 1, "eval": 1}, mode
        assert report[mode]["recompiles_after_first_step"] == 0, mode


def test_loop_runs_without_implicit_transfers(eight_devices):
    report, _, workdir, log = eight_devices
    assert "parallel=shard_map over 8 devices" in log
    assert set(report["loop_val"]) >= {"loss", "age_mae", "gender_acc"}
    assert (workdir / "checkpoints" / "3").is_dir()


def test_save_on_8_restore_on_1_evaluates_the_same_and_continues(
    eight_devices, synthetic_dir, synthetic_tfds
):
    from agr_jax.evaluation import evaluate_workdir
    from agr_jax.train.loop import train_and_evaluate
    from agr_jax.train.metric_writer import read_metrics

    report, _, workdir, _ = eight_devices
    on_one = evaluate_workdir(workdir, split="validation", which="latest")
    assert on_one["checkpoint_step"] == 3
    for key, value in report["loop_val"].items():
        assert on_one[key] == pytest.approx(value, rel=RTOL, abs=1e-6), key

    config = _config(synthetic_dir, synthetic_tfds, total_steps=5, parallel="none")
    train_and_evaluate(config, workdir)
    steps = [row["step"] for row in read_metrics(workdir) if "train/loss" in row]
    assert steps[-1] == 5 and 4 in steps
    assert (workdir / "checkpoints" / "5").is_dir()


# ---------------------------------------------------------------------------- multi-host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(config, workdir: Path, processes: int, devices: int) -> list[subprocess.Popen]:
    """One training run of `processes` (through `jax.distributed` when more than one)."""
    cmd = [sys.executable, "-m", "agr_jax.train", f"--config={ROOT}/configs/quickstart.py",
           f"--workdir={workdir}", *_flags(config)]
    if processes > 1:
        address = f"localhost:{_free_port()}"
        cmds = [[*cmd, "--distributed", f"--coordinator_address={address}",
                 f"--num_processes={processes}", f"--process_id={i}"] for i in range(processes)]
    else:
        cmds = [cmd]
    return [subprocess.Popen(c, env=_env(devices), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=ROOT) for c in cmds]


def _finish(*runs: list[subprocess.Popen]) -> list[str]:
    """Waits for every process of `runs`; one joined log per run; kills stragglers."""
    procs = [p for run in runs for p in run]
    try:
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs, strict=True):
        _check(p, log)
    joined, i = [], 0
    for run in runs:
        joined.append("\n".join(logs[i:i + len(run)]))
        i += len(run)
    return joined


@pytest.fixture(scope="module")
def multi_host(synthetic_dir, synthetic_tfds, tmp_path_factory):
    """The 2x2 first half and the 1x4 straight run share the cores (compiles are mostly
    single-threaded); the 2x2 resume needs the first half's checkpoint."""
    root = tmp_path_factory.mktemp("multi_host")
    cfg = lambda steps: _config(synthetic_dir, synthetic_tfds, total_steps=steps)  # noqa: E731
    first, straight = _finish(_start(cfg(3), root / "two_hosts", processes=2, devices=2),
                              _start(cfg(6), root / "one_host", processes=1, devices=4))
    (resume,) = _finish(_start(cfg(6), root / "two_hosts", processes=2, devices=2))
    return root, {"2x2_first": first, "2x2_resume": resume, "1x4": straight}


def test_two_processes_match_one_process(multi_host):
    root, logs = multi_host
    assert "process 0 of 2, 2 local / 4 global devices" in logs["2x2_first"]
    assert "resumed from step 3" in logs["2x2_resume"]
    assert "parallel=shard_map over 4 devices" in logs["1x4"]
    (two, meta_two), (one, meta_one) = _restore_params(root / "two_hosts", root / "one_host")
    assert meta_two["step"] == meta_one["step"] == 6
    assert meta_two["process_count"] == 2 and meta_one["process_count"] == 1
    errors = _rel_errors(two, one)
    assert max(errors.values()) < RTOL, sorted(errors.items(), key=lambda kv: -kv[1])[:3]
    for key, value in meta_one["val"].items():
        assert meta_two["val"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    # Only process 0 writes logs and metrics.
    rows = [json.loads(line) for line in (root / "two_hosts" / "metrics.jsonl").open()]
    assert len({r["step"] for r in rows if "val/loss" in r}) == len(
        [r for r in rows if "val/loss" in r]
    )


# ---------------------------------------------------------------------------- in-process


def test_bad_parallel_settings_name_the_key():
    from agr_jax.train import parallel

    with pytest.raises(ValueError, match="config.parallel"):
        parallel.DataParallel.create("dp")
    dp = parallel.DataParallel.create("shard_map")
    dp.check_batch_size(dp.num_devices * 3)
    assert dp.padded_size(1) == dp.num_devices
    if dp.num_devices > 1:
        with pytest.raises(ValueError, match="config.batch_size"):
            dp.check_batch_size(dp.num_devices + 1)


def test_detect_distributed(monkeypatch):
    from agr_jax.train import parallel

    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    assert not parallel.detect_distributed()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not parallel.detect_distributed()
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert parallel.detect_distributed()
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1k-0,t1k-1")
    assert parallel.detect_distributed()
