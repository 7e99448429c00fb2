"""Config validation: unknown keys, wrong types, impossible combinations, all before compiling."""

import json
import runpy
from pathlib import Path

import jax
import ml_collections
import pytest

from agr_jax import configuration
from agr_jax.train import loop

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"


def base() -> ml_collections.ConfigDict:
    return runpy.run_path(str(QUICKSTART))["get_config"]()


def as_file_config(**changes) -> ml_collections.ConfigDict:
    """A config as a config *file* may build it: plain values, no type locking from the base."""
    values = base().to_dict()
    for dotted, value in changes.items():
        node = values
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return ml_collections.ConfigDict(values)


def test_base_config_is_valid():
    configuration.validate(base())


@pytest.mark.parametrize(
    "dotted, value, key",
    [
        ("batch_sise", 32, "batch_sise"),
        ("optimizer.learnig_rate", 1e-3, "optimizer.learnig_rate"),
        ("data.augment.mixup", 0.2, "data.augment.mixup"),
        ("tasks.weights.emotion", 1.0, "tasks.weights.emotion"),
        ("model.depth", 50, "model.depth"),  # not a field of the RoR backbone
    ],
)
def test_unknown_key_is_named(dotted, value, key):
    config = base()
    node = config
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(ValueError, match=f"unknown key '{key}'"):
        configuration.validate(config)


def test_optional_and_backbone_keys_are_accepted():
    config = base()
    config.model.expansion = 2  # a RoR constructor field, not in the base config
    config.tasks.age_bins = (0, 13, 20, 40, 117)
    config.optimizer.lr_multipliers = (("backbone/*", 0.1), ("head/age/*", 2.0))
    config.optimizer.nesterov = False
    configuration.validate(config)


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("batch_size", "64"),
        ("batch_size", True),  # bool is an int subclass; still wrong
        ("num_epochs", 2.5),
        ("optimizer.learning_rate", "3e-3"),
        ("data.split_ratios", "0.8,0.1,0.1"),
        ("data.dir", 5),
        ("model.head_hidden", 128),
        ("data.augment", "flip"),
        ("skip_nonfinite", "yes"),
    ],
)
def test_wrong_type_in_a_config_file_is_named(dotted, value):
    with pytest.raises(ValueError, match=f"config.{dotted}: expected"):
        configuration.validate(as_file_config(**{dotted: value}))


def test_numbers_that_fit_are_accepted():
    config = as_file_config(**{"optimizer.learning_rate": 1, "data.dir": "/some/where"})
    configuration.validate(config)


def test_override_of_wrong_type_is_refused_by_ml_collections():
    with pytest.raises(TypeError, match="batch_size"):
        base().batch_size = "64"


def test_saved_config_json_is_checked(tmp_path):
    path = configuration.save(base(), tmp_path)
    assert configuration.load(tmp_path).batch_size == 64
    values = json.loads(path.read_text())
    values["optimizer"]["learning_rate"] = "fast"
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"config.json.optimizer.learning_rate: expected float"):
        configuration.load(tmp_path)
    values["optimizer"]["learning_rate"] = 0.1
    values["optimiser"] = {"name": "adam"}
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match="unknown key 'optimiser'"):
        configuration.load(tmp_path)


@pytest.mark.parametrize("parallel", ["shard_map", "pmap"])
def test_global_batch_not_divisible_by_devices(parallel):
    config = base()
    config.parallel = parallel
    config.batch_size = 30
    with pytest.raises(ValueError, match=r"config.batch_size: .*30 .*4 devices"):
        configuration.validate(config, num_devices=4)
    config.batch_size = 32
    config.eval_batch_size = 250  # eval batches are padded to a multiple of the devices
    configuration.validate(config, num_devices=4)


def test_batch_must_split_over_processes_even_without_parallel():
    config = base()
    config.parallel = "none"
    configuration.validate(config, num_devices=3)  # parallel="none": one device is used
    with pytest.raises(ValueError, match=r"config.batch_size: .*64 .*3 processes"):
        configuration.validate(config, num_processes=3)


def test_seven_race_classes_on_utkface():
    config = base()
    config.tasks.num_races = 7
    with pytest.raises(ValueError, match=r"config.tasks.num_races: 7 .*utkface.* 5"):
        configuration.validate(config)
    config.tasks.num_races = 5
    configuration.validate(config)


@pytest.mark.parametrize("mode", ["bins", "ordinal"])
def test_age_mode_without_bins(mode):
    config = base()
    config.tasks.age_mode = mode
    with pytest.raises(ValueError, match=rf"config.tasks.age_bins: .*age_mode '{mode}'"):
        configuration.validate(config)
    config.tasks.age_bins = ()
    with pytest.raises(ValueError, match="config.tasks.age_bins"):
        configuration.validate(config)


@pytest.mark.parametrize(
    "dotted, value, key",
    [
        ("data.min_age", 60, "data.min_age"),  # with max_age 20 below
        ("checkpoint_every_steps", -1, "checkpoint_every_steps"),
        ("log_every_steps", 0, "log_every_steps"),
        ("model.name", "resnet9000", "model.name"),
        ("dtype", "float64", "dtype"),
        ("eval_checkpoint", "first", "eval_checkpoint"),
        ("data.decoded_cache_gb", -1.0, "data.decoded_cache_gb"),
        ("eval_shift_tta", 10_000, "eval_shift_tta"),
        ("eval_shift_tta", -1, "eval_shift_tta"),
        ("data.augment_on", "gpu", "data.augment_on"),
    ],
)
def test_bad_values_are_named(dotted, value, key):
    config = as_file_config(**{dotted: value, "data.max_age": 20})
    with pytest.raises(ValueError, match=f"config.{key}"):
        configuration.validate(config)


def test_training_fails_before_any_compilation(tmp_path, monkeypatch):
    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled before the config was validated")

    monkeypatch.setattr(jax, "jit", no_compiling)
    config = base()
    config.tasks.num_races = 7
    with pytest.raises(ValueError, match="config.tasks.num_races"):
        loop.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written either


def test_model_keys_follow_the_chosen_backbone(monkeypatch):
    from agr_jax import models

    def function_backbone(*, depth: int = 2, dtype=None, param_dtype=None, bn_axis_name=None):
        raise NotImplementedError

    monkeypatch.setitem(models.BACKBONES, "fn", function_backbone)
    config = base()
    config.model = {"name": "fn", "depth": 3, "head_hidden": (8,)}
    configuration.validate(config)
    config.model.width = 4
    with pytest.raises(ValueError, match=r"unknown key 'model.width' for backbone 'fn'"):
        configuration.validate(config)
    monkeypatch.setitem(models.BACKBONES, "fn", lambda **options: None)
    configuration.validate(config)  # a **kwargs constructor checks its own options


def test_device_augmentation_refuses_rotation_and_noise_naming_the_keys():
    config = base()
    config.data.augment.rotate_deg = 5.0
    configuration.validate(config)  # "auto": everything stays on the host
    config.data.augment_on = "device"
    with pytest.raises(ValueError, match=r"config.data.augment / config.data.augment_on: "
                                         r"augment_on='device': \['rotate_deg', 'noise_std'\]"):
        configuration.validate(config)


@pytest.mark.parametrize(
    "ratios, folds, reason",
    [
        ((0.9, 0.1, 0.0), 0, r"the test share is 0 in \(0.9, 0.1, 0.0\).*TFDS cannot build an "
                             "empty split"),
        ((0.0, 0.5, 0.5), 0, "the train share is 0"),
        ((0.9, 0.0, 0.1), 5, "the validation share is 0"),  # k-fold: train/validation used
        ((1.1, -0.1, 0.0), 0, "must be non-negative"),
        ((0.8, 0.3, 0.1), 0, "must sum to 1"),
        ((0.8, 0.2), 0, "must have 3 values"),
    ],
)
def test_split_ratios_tfds_cannot_build_are_refused_with_the_reason(ratios, folds, reason):
    config = base()
    config.data.split_ratios = ratios
    config.data.folds = folds
    with pytest.raises(ValueError, match=f"config.data.split_ratios: .*{reason}"):
        configuration.validate(config)


def test_k_fold_takes_its_test_split_from_the_fold_not_the_share():
    config = base()
    config.data.split_ratios = (0.9, 0.1, 0.0)
    config.data.folds, config.data.fold = 5, 4
    configuration.validate(config)
    for folds, fold, key in ((1, 0, "data.folds"), (5, 5, "data.fold"), (5, -1, "data.fold")):
        config.data.folds, config.data.fold = folds, fold
        with pytest.raises(ValueError, match=f"config.{key}: expected"):
            configuration.validate(config)


def test_a_zero_split_share_stops_training_before_the_data_is_prepared(tmp_path, monkeypatch):
    from agr_jax.data import prepare

    def no_preparing(*args, **kwargs):
        raise AssertionError("prepared the data before the config was validated")

    monkeypatch.setattr(prepare, "prepare", no_preparing)
    config = base()
    config.data.split_ratios = (0.9, 0.1, 0.0)
    with pytest.raises(ValueError, match="config.data.split_ratios: the test share is 0"):
        loop.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
