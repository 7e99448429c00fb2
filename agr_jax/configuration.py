"""Config checks and persistence: fail before any compilation, naming the key at fault.

Keys and types are checked against a reference schema, data-driven so that new keys cost
one line: every key of `agr_jax/defaults.py` (the base config) with its type, plus
`OPTIONAL_KEYS` (keys without a natural default), plus the constructor fields of the chosen
backbone under `model.*`.
A new config key belongs in the base config (with its default) or in `OPTIONAL_KEYS`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections

from agr_jax import defaults, models, tasks
from agr_jax.data import fairface, pipeline, prepare, utkface
from agr_jax.train import age_balance, distill, optim, phases
from agr_jax.train.device_data import PLACEMENTS

CONFIG_FILE = "config.json"
DTYPES = ("float32", "bfloat16", "float16")
PARALLEL = ("none", "shard_map", "pmap")
# Keys the base config does not set but the code reads: dotted key -> accepted types.
OPTIONAL_KEYS: dict[str, tuple[type, ...]] = {
    "tasks.num_races": (int, type(None)),
    "optimizer.nesterov": (bool,),
    "optimizer.final_lr_fraction": (float, int),
    "optimizer.pct_start": (float, int),
    "data.min_face_score": (float, int, type(None)),
    "eval_age_bin_edges": (list, tuple, type(None)),
}
# Race classes each dataset labels (UTKFace 5; FairFace would be 7).
DATASET_RACES = {"utkface": utkface.RACES, "fairface": fairface.RACES, "imdb_wiki": utkface.RACES}
_BACKBONE_FIXED = {"dtype", "param_dtype", "bn_axis_name", "parent", "name"}


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    """`get_config()` of a configs/*.py file by path (configs/ is not a package), so one
    config can build on another and tests can load them."""
    import importlib.util

    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
    if spec is None or not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@functools.cache
def schema() -> dict[str, tuple[type, ...]]:
    """Dotted key -> accepted types, from the base config (placeholders keep their type)."""

    def walk(cfg: ml_collections.ConfigDict, prefix: str) -> dict[str, tuple[type, ...]]:
        out: dict[str, tuple[type, ...]] = {}
        for key in cfg:
            kind = cfg.get_ref(key).get_type()
            if issubclass(kind, ml_collections.ConfigDict):
                out[prefix + key] = (dict,)
                out.update(walk(cfg[key], f"{prefix}{key}."))
            else:
                out[prefix + key] = _accepted(kind)
        return out

    return {**walk(base_config(), ""), **OPTIONAL_KEYS}


def base_config() -> ml_collections.ConfigDict:
    """A fresh copy of the reference (base) config the schema is read from."""
    return defaults.get_config()


def _accepted(kind: type) -> tuple[type, ...]:
    if kind is float:
        return (float, int)
    if kind in (tuple, list):
        return (tuple, list)
    return (kind, type(None)) if kind is str else (kind,)


def _type_ok(value: Any, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False  # bool is an int subclass; True is no batch size
    if isinstance(value, Mapping):
        return dict in accepted
    return isinstance(value, accepted)


def _leaves(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out[prefix + key] = value
        if isinstance(value, Mapping):
            out.update(_leaves(value, f"{prefix}{key}."))
    return out


def _model_keys(model_name: str) -> set[str] | None:
    """Keys `model.*` may hold for this backbone; None when that cannot be told (unknown
    backbone: `model.name` is reported instead; a constructor taking **kwargs)."""
    backbone = models.BACKBONES.get(model_name)
    if backbone is None:
        return None
    if dataclasses.is_dataclass(backbone):
        fields = {f.name for f in dataclasses.fields(backbone)}
    else:
        params = inspect.signature(backbone).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        fields = {p.name for p in params}
    fields -= _BACKBONE_FIXED
    return {"model.name", *(f"model.{k}" for k in (*models.HEAD_KEYS, *fields))}


def check_keys_and_types(config: Mapping[str, Any], source: str = "config") -> None:
    """Every key known (the base config, `OPTIONAL_KEYS`, the backbone's fields), every
    value of the expected type. Works on a ConfigDict or a plain dict loaded from JSON."""
    known = schema()
    leaves = _leaves(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    model_keys = _model_keys(str(leaves.get("model.name")))
    for key, value in leaves.items():
        if key.startswith("model."):
            if model_keys is not None and key not in model_keys:
                raise ValueError(
                    f"{source}: unknown key {key!r} for backbone {leaves['model.name']!r}; "
                    f"expected one of {sorted(model_keys)}"
                )
        elif key not in known:
            parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
            siblings = sorted(
                k for k in known if k.startswith(parent) and "." not in k[len(parent) :]
            )
            raise ValueError(
                f"{source}: unknown key {key!r} (a typo?); known keys here: {siblings}"
            )
        if key.startswith("model.") and key[6:] not in ("name", *models.HEAD_KEYS):
            continue  # backbone options: types vary by backbone (int width, float multiplier)
        if key in known and not _type_ok(value, known[key]):
            names = " or ".join(t.__name__ for t in known[key])
            raise ValueError(
                f"{source}.{key}: expected {names}, got {type(value).__name__} {value!r}"
            )


def check_eval_shift_tta(shift: int, image_size: int) -> None:
    """The shifted test-time views reflect-pad by `shift` px, which needs shift < size / 2;
    shared by `validate` and evaluate's `--shift_tta` override of a saved run's config."""
    if not 0 <= shift < image_size // 2:
        raise ValueError(f"config.eval_shift_tta: expected 0 (off) or a shift in pixels below "
                         f"data.image_size / 2 = {image_size // 2}, got {shift!r}")


def validate(
    config: ml_collections.ConfigDict,
    num_devices: int | None = None,
    num_processes: int | None = None,
) -> None:
    """All checks that need no data and no compilation; raise ValueError naming the key.

    `num_devices`/`num_processes` default to what JAX sees (tests pass other counts)."""
    check_keys_and_types(config)

    def require(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"config.{key}: expected {expected}, got {config_get(config, key)!r}")

    require(config.model.name in models.available(), "model.name", f"one of {models.available()}")
    require(config.batch_size > 0, "batch_size", "a positive global batch size")
    require(config.eval_batch_size > 0, "eval_batch_size", "a positive batch size")
    require(config.data.image_size >= 16, "data.image_size", "at least 16 pixels")
    require(config.data.name in DATASET_RACES, "data.name", f"one of {sorted(DATASET_RACES)}")
    require(config.eval_checkpoint in ("best", "latest"), "eval_checkpoint",
            '"best" or "latest"')
    check_eval_shift_tta(int(config.get("eval_shift_tta", 0)), config.data.image_size)
    require(config.data.decoded_cache_gb >= 0, "data.decoded_cache_gb",
            ">= 0 (0 turns the decoded cache off)")
    augment_on = config.data.get("augment_on", "auto")
    require(augment_on in pipeline.AUGMENT_ON, "data.augment_on", f"one of {pipeline.AUGMENT_ON}")
    try:
        pipeline.augments_on_device(dict(config.data.augment), augment_on)
    except ValueError as e:
        raise ValueError(f"config.data.augment / config.data.augment_on: {e}") from e
    require(
        config.num_epochs > 0 or config.total_steps > 0, "num_epochs", "> 0 (or total_steps > 0)"
    )
    require(config.dtype in DTYPES, "dtype", f"one of {DTYPES}")
    require(config.param_dtype in DTYPES, "param_dtype", f"one of {DTYPES}")
    require(
        config.optimizer.name in optim.OPTIMIZERS, "optimizer.name", f"one of {optim.OPTIMIZERS}"
    )
    require(
        config.optimizer.schedule in optim.SCHEDULES,
        "optimizer.schedule",
        f"one of {optim.SCHEDULES}",
    )
    require(config.optimizer.learning_rate > 0, "optimizer.learning_rate", "> 0")
    ema_decay = float(config.optimizer.get("ema_decay", 0.0))
    require(0.0 <= ema_decay < 1.0, "optimizer.ema_decay", "0 (off) or a decay in (0, 1)")
    require(config.get("parallel", "none") in PARALLEL, "parallel", f"one of {PARALLEL}")
    require(config.data.get("placement", "host") in PLACEMENTS, "data.placement",
            f"one of {PLACEMENTS}")
    require(int(config.get("steps_per_call", 1)) >= 1, "steps_per_call",
            ">= 1 train steps per jitted call")
    require(int(config.model.get("channel_multiple", 1)) >= 1, "model.channel_multiple",
            ">= 1 (1: the widths as written)")
    tasks_cfg = config.get("tasks", {})
    age_mode = tasks_cfg.get("age_mode", "regression")
    require(age_mode in tasks.AGE_MODES, "tasks.age_mode", f"one of {tasks.AGE_MODES}")
    require(
        tasks_cfg.get("weighting", "fixed") in tasks.WEIGHTINGS,
        "tasks.weighting",
        f"one of {tasks.WEIGHTINGS}",
    )
    if age_mode != "regression":
        require(
            tasks_cfg.get("age_bins") not in (None, "", ()),
            "tasks.age_bins",
            f"age-bin edges for age_mode {age_mode!r}: a preset "
            f"{sorted([*tasks.AGE_BIN_PRESETS, tasks.FIVE_YEAR])} or K+1 increasing edges",
        )
        tasks.resolve_age_edges(tasks_cfg.age_bins, float(tasks_cfg.get("max_age", 116.0)))
    tasks.TaskSpec.from_config(tasks_cfg)  # the remaining task checks (tasks.age_loss, ...)
    require(tasks_cfg.get("age_balance", "none") in age_balance.AGE_BALANCE, "tasks.age_balance",
            f"one of {age_balance.AGE_BALANCE}")
    require(float(tasks_cfg.get("age_balance_sigma", 2.0)) >= 0, "tasks.age_balance_sigma",
            ">= 0 years (0: raw counts)")
    require(float(tasks_cfg.get("age_balance_cap", 5.0)) >= 1, "tasks.age_balance_cap",
            ">= 1 (weights average 1)")
    _check_distill(config, require)
    require(int(config.get("cpu_devices", 0)) >= 0, "cpu_devices", ">= 0 (0: JAX's default)")
    optim.parse_lr_multipliers(config.optimizer.get("lr_multipliers", ()))
    phases.parse_phases(config.get("init", {}).get("phases", ()), steps_per_epoch=1)
    folds, fold = int(config.data.get("folds", 0)), int(config.data.get("fold", 0))
    require(folds == 0 or folds >= 2, "data.folds", "0 (off) or >= 2 k-fold folds")
    require(folds == 0 or 0 <= fold < folds, "data.fold", f"a fold in 0..{folds - 1}")
    prepare.check_split_ratios(config.data.split_ratios, folds, key="config.data.split_ratios")
    require(config.checkpoint_every_steps >= 0, "checkpoint_every_steps", ">= 0 (0: each epoch)")
    require(config.log_every_steps > 0, "log_every_steps", "> 0")
    lo, hi = int(config.data.min_age), int(config.data.max_age)
    require(lo < 0 or hi < 0 or lo <= hi, "data.min_age", f"<= data.max_age ({hi})")
    _check_combinations(config, num_devices, num_processes)


def _check_distill(config: ml_collections.ConfigDict, require: Any) -> None:
    d = config.get("distill", {})
    if not d or not d.get("teacher"):
        return
    for key in ("alpha", "age_alpha"):
        require(0.0 <= float(d[key]) <= 1.0, f"distill.{key}", "a share in [0, 1]")
    require(float(d.temperature) > 0, "distill.temperature", "> 0")
    require(int(d.batch_size) > 0, "distill.batch_size", "> 0")
    distill.views_of(d.shifts)
    require(config.tasks.get("age_mode", "regression") == "regression", "tasks.age_mode",
            "'regression' with distill.teacher (the teacher's age is a number of years)")
    augment = dict(config.data.augment)
    require(not augment.get("rotate_deg") and not augment.get("noise_std")
            and config.data.get("augment_on", "auto") != "host", "data.augment",
            "flip and pad-crop only, in the step (no rotate_deg or noise_std, augment_on not "
            "'host'): with distill.teacher the views of distill.shifts are the augmentation")


def _check_combinations(
    config: ml_collections.ConfigDict, num_devices: int | None, num_processes: int | None
) -> None:
    """Settings that are each valid but impossible together."""
    processes = jax.process_count() if num_processes is None else num_processes
    parallel = config.get("parallel", "none")
    devices = 1
    if parallel != "none":
        devices = jax.device_count() if num_devices is None else num_devices
    splits = ((devices, f"devices (parallel={parallel!r})"), (processes, "processes"))
    # Only the training batch: eval batches are padded to a multiple of the device count
    # (DataParallel.padded_size) and every process evaluates the whole split.
    for count, what in splits:
        if config.batch_size % count:
            raise ValueError(
                f"config.batch_size: the global batch {config.batch_size} is not divisible by "
                f"the {count} {what}; use a multiple of {count}"
            )
    dataset = config.data.name
    races = config.tasks.get("num_races")
    labelled = DATASET_RACES[dataset]
    if races and races != len(labelled):
        raise ValueError(
            f"config.tasks.num_races: {races} race classes, but data.name={dataset!r} labels "
            f"{len(labelled)} ({', '.join(labelled)})"
        )


def config_get(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return None  # unset key: reported as None
        node = node[part]
    return node


def save(config: ml_collections.ConfigDict, workdir: str | Path) -> Path:
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    return path


def load(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: not a training workdir (no {CONFIG_FILE}); "
            "pass the --workdir of a training run"
        )
    values = json.loads(path.read_text())
    check_keys_and_types(values, source=str(path))
    return ml_collections.ConfigDict(values)
