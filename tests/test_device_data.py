"""The split on the device (`data.placement`) and K steps per call (`steps_per_call`).

- rows batches gathered on device are bit-identical to the host pipeline's batches, with the
  same iterator state;
- `auto` says where and why; `device` refuses what it cannot do;
- training with the split on device and 4 steps per call reaches the parameters of host
  batches and one step per call, on 1 device (in-process) and 8 (a subprocess), and a run
  killed between checkpoints resumes to the same parameters, on 1 device and on 8.
"""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from agr_jax.data import decoded_cache, pipeline
from agr_jax.train import device_data, multi_step
from agr_jax.train.device_augment import flip_pad_crop
from agr_jax.train.input import load_split
from tests.test_parallel import (
    ROOT,
    RTOL,
    TIMEOUT,
    _check,
    _config,
    _env,
    _flags,
    _rel_errors,
    _restore_params,
)

AUGMENT = {"flip": True, "pad_crop": 3, "rotate_deg": 0.0, "noise_std": 0.0}
SIZE, BATCH = 16, 8


@pytest.fixture(scope="module")
def decoded(synthetic_tfds):
    source = load_split(synthetic_tfds, "train")
    return decoded_cache.maybe_cached(source, synthetic_tfds, "train", SIZE, max_gb=1.0)


def _stream(source, **kw):
    return iter(pipeline.make_dataset(source, image_size=SIZE, batch_size=BATCH, train=True,
                                      seed=3, augment=AUGMENT, **kw))


def test_rows_gathered_on_device_are_the_host_batches(decoded):
    host = _stream(decoded, augment_on="host")
    rows = _stream(decoded, augment_on="device", rows_only=True)
    split = device_data.put_split(decoded, jax.sharding.Mesh(jax.devices()[:1], ("data",)))

    @jax.jit
    def gather(split, batch):
        out = device_data.gather_batch(split, batch)
        out["image"] = flip_pad_crop(out.pop("image"), out.pop(pipeline.FLIP_CROP))
        return out

    for _ in range(15):  # past an epoch boundary (96 records / 8)
        want, got = next(host), next(rows)
        assert set(got) == {pipeline.ROWS, pipeline.FLIP_CROP}  # nothing else crosses
        assert got[pipeline.ROWS].dtype == np.int32
        got = jax.device_get(gather(split, got))
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert rows.get_state() == host.get_state()


def test_eval_rows_bring_labels_but_no_pixels(decoded):
    ds = pipeline.make_dataset(decoded, image_size=SIZE, batch_size=BATCH, train=False, seed=0,
                               rows_only=True)
    batch = next(iter(ds))
    assert set(batch) == {pipeline.ROWS, "age", "gender", "race"}
    np.testing.assert_array_equal(batch["age"], decoded.labels["age"][batch[pipeline.ROWS]])


def test_rows_only_refuses_host_augmentation(decoded):
    with pytest.raises(ValueError, match="flip and pad-crop"):
        _stream(decoded, augment_on="host", rows_only=True)


def _placement_config(**data):
    from conftest import make_tiny_config

    c = make_tiny_config()
    c.data.augment.update(AUGMENT)
    c.data.update(data)
    return c


def test_auto_placement_says_where_and_why(decoded):
    choose = device_data.choose_placement
    need = device_data.split_bytes(decoded)
    auto = _placement_config(placement="auto")
    on_cpu = choose(auto, [decoded], "shard_map", backend="cpu", memory=None)
    assert not on_cpu.on_device and "CPU backend" in on_cpu.reason
    gpu = choose(auto, [decoded], "shard_map", backend="gpu", memory=80 * 2**30)
    assert gpu.on_device and "device" in gpu.reason
    small = choose(auto, [decoded], "shard_map", backend="gpu", memory=2 * need)
    assert not small.on_device and "of the device's" in small.reason
    jpegs = choose(auto, [decoded.source], "shard_map", backend="gpu", memory=80 * 2**30)
    assert not jpegs.on_device and "decoded cache" in jpegs.reason
    assert not choose(_placement_config(placement="host"), [decoded], "none").on_device


def test_device_placement_refuses_what_the_step_cannot_do(decoded):
    rotating = _placement_config(placement="device")
    rotating.data.augment.rotate_deg = 5.0
    with pytest.raises(ValueError, match="flip and pad-crop only"):
        device_data.choose_placement(rotating, [decoded], "shard_map")
    with pytest.raises(ValueError, match="pmap"):
        device_data.choose_placement(_placement_config(placement="device"), [decoded], "pmap")
    with pytest.raises(ValueError, match="data.placement"):
        device_data.choose_placement(_placement_config(placement="gpu"), [decoded], "none")


def test_calls_end_at_epochs_checkpoints_and_the_last_step():
    sizes, step = [], 0
    while step < 14:
        n = multi_step.call_size(step, 4, boundaries=(6, 4), total_steps=14)
        sizes.append(n)
        step += n
    assert sizes == [4, 2, 2, 4, 2]  # 4 | 6 (epoch) | 8 (ckpt) | 12 | 14 (last)


def test_stacked_batches_keep_the_iterator_state(decoded):
    plain = _stream(decoded, augment_on="device", rows_only=True)
    stacked = multi_step.StackedBatches(
        _stream(decoded, augment_on="device", rows_only=True), lambda step: 3)
    block = next(stacked)
    assert block[pipeline.ROWS].shape == (3, BATCH)
    for i in range(3):
        np.testing.assert_array_equal(block[pipeline.ROWS][i], next(plain)[pipeline.ROWS])
    assert stacked.get_state() == plain.get_state() and stacked.step == 3


# ------------------------------------------------------------------- training, 1 and 8 devices

STEPS = 8  # 6 steps per epoch (96 / 16), checkpoints every 4: calls of 4, 2, 2 at K = 4


def _train_config(synthetic_dir, synthetic_tfds, placement: str, k: int):
    c = _config(synthetic_dir, synthetic_tfds, total_steps=STEPS, checkpoint_every_steps=4)
    c.data.augment.update(AUGMENT)
    c.data.placement, c.steps_per_call = placement, k
    return c


@pytest.fixture(scope="module")
def one_device(synthetic_dir, synthetic_tfds, tmp_path_factory):
    from agr_jax.train.loop import train_and_evaluate

    root = tmp_path_factory.mktemp("placement")
    for placement, k in (("host", 1), ("device", 4)):
        train_and_evaluate(_train_config(synthetic_dir, synthetic_tfds, placement, k),
                           root / f"{placement}_{k}")
    return root


def test_device_placement_with_4_steps_per_call_matches_host_on_one_device(one_device):
    (host, meta_host), (dev, meta_dev) = _restore_params(one_device / "host_1",
                                                         one_device / "device_4")
    assert meta_host["step"] == meta_dev["step"] == STEPS
    errors = _rel_errors(dev, host)
    assert max(errors.values()) < RTOL, sorted(errors.items(), key=lambda kv: -kv[1])[:3]
    for key, value in meta_host["val"].items():  # validation read from the device copy
        assert meta_dev["val"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_device_placement_resumes_exactly(one_device, synthetic_dir, synthetic_tfds, tmp_path):
    from agr_jax.train.loop import train_and_evaluate

    copy = tmp_path / "resumed"
    shutil.copytree(one_device / "device_4", copy)
    shutil.rmtree(copy / "checkpoints" / str(STEPS))  # as if killed after step 4's checkpoint
    train_and_evaluate(_train_config(synthetic_dir, synthetic_tfds, "device", 4), copy)
    (straight, _), (resumed, meta) = _restore_params(one_device / "device_4", copy)
    assert meta["step"] == STEPS
    errors = _rel_errors(resumed, straight)
    assert max(errors.values()) < RTOL, sorted(errors.items(), key=lambda kv: -kv[1])[:3]


def test_device_placement_with_4_steps_per_call_matches_host_and_resumes_on_8_devices(
        synthetic_dir, synthetic_tfds, tmp_path):
    import subprocess
    import sys

    def start(placement: str, k: int, workdir) -> subprocess.Popen:
        config = _train_config(synthetic_dir, synthetic_tfds, placement, k)
        augment = [f"--config.data.augment.{key}={value}" for key, value in AUGMENT.items()]
        cmd = [sys.executable, "-m", "agr_jax.train", f"--config={ROOT}/configs/quickstart.py",
               f"--workdir={workdir}", *_flags(config), *augment]
        return subprocess.Popen(cmd, env=_env(8), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    procs = {placement: start(placement, k, tmp_path / placement)
             for placement, k in (("host", 1), ("device", 4))}
    logs = {name: p.communicate(timeout=TIMEOUT)[0] for name, p in procs.items()}
    for name, p in procs.items():
        _check(p, logs[name])
    assert "parallel=shard_map over 8 devices" in logs["device"]
    assert "data.placement='device'" in logs["device"]
    (host, _), (dev, meta) = _restore_params(tmp_path / "host", tmp_path / "device")
    assert meta["step"] == STEPS
    errors = _rel_errors(dev, host)
    assert max(errors.values()) < RTOL, sorted(errors.items(), key=lambda kv: -kv[1])[:3]
    saved = json.loads((tmp_path / "device" / "config.json").read_text())
    assert saved["steps_per_call"] == 4 and saved["data"]["placement"] == "device"

    # Killed after the checkpoint before the last (step 6, the epoch's end), resumed on 8
    # devices: the same parameters.
    shutil.copytree(tmp_path / "device", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / str(STEPS))
    resumed_proc = start("device", 4, tmp_path / "resumed")
    log = resumed_proc.communicate(timeout=TIMEOUT)[0]
    _check(resumed_proc, log)
    assert f"resumed from step {STEPS - 2} " in log, log[-3000:]
    (straight, _), (resumed, meta) = _restore_params(tmp_path / "device", tmp_path / "resumed")
    assert meta["step"] == STEPS
    errors = _rel_errors(resumed, straight)
    assert max(errors.values()) < RTOL, sorted(errors.items(), key=lambda kv: -kv[1])[:3]


def test_evaluation_reads_the_device_copy(one_device, caplog):
    import logging

    from agr_jax.evaluation import evaluate_workdir

    on_host = evaluate_workdir(one_device / "host_1", split="validation", which="latest")
    with caplog.at_level(logging.INFO, logger="agr_jax.evaluation"):
        on_device = evaluate_workdir(one_device / "device_4", split="validation",
                                     which="latest")
    assert "evaluation: data.placement='device'" in caplog.text
    for key in ("n", "age_mae", "gender_acc", "race_acc"):
        assert on_device[key] == pytest.approx(on_host[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("key, value, expected", [
    ("data.placement", "gpu", "one of"), ("steps_per_call", 0, ">= 1"),
    ("model.channel_multiple", 0, ">= 1")])
def test_bad_settings_name_the_key(key, value, expected):
    from conftest import make_tiny_config

    from agr_jax import configuration

    config = make_tiny_config(**{key: value})
    with pytest.raises(ValueError, match=rf"config\.{key}: expected {expected}"):
        configuration.validate(config)
