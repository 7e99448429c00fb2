"""The training loop: data, model, state, restore, steps, validation, checkpoints, logs.

Sections, laid out as big_vision's train.py: input -> model -> state (+ restore) -> compiled
steps -> loop. The step is dispatched before the previous step's metrics are fetched (one
step late), so the host never blocks the device between steps.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
from tqdm import tqdm

from agr_jax import configuration, evaluation, metrics
from agr_jax.train import (
    age_balance,
    bn_recalibration,
    device_data,
    distill,
    faults,
    init_weights,
    multi_step,
    parallel,
    phases,
)
from agr_jax.train import calls as calls_lib
from agr_jax.train import input as input_lib
from agr_jax.train import workdir as workdir_lib
from agr_jax.train.checkpoint import Checkpoints
from agr_jax.train.metric_writer import MetricWriter
from agr_jax.train.model_spec import build_model_and_spec
from agr_jax.train.nonfinite import NonFiniteGuard
from agr_jax.train.prefetch import DevicePrefetcher
from agr_jax.train.state import (
    TrainState,
    count_params,
    create_train_state,
    init_compiler_options,
)
from agr_jax.train.step import make_eval_step, make_train_step

log = logging.getLogger(__name__)


def plan_steps(config: ml_collections.ConfigDict, num_train: int) -> tuple[int, int]:
    """(steps_per_epoch, total_steps); total_steps > 0 in the config overrides epochs."""
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"config.batch_size: {config.batch_size} is larger than the training split "
            f"({num_train} examples)"
        )
    total = config.total_steps if config.total_steps > 0 else config.num_epochs * steps_per_epoch
    return steps_per_epoch, int(total)


def _host_scalars(tree: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def validate_split(
    config: ml_collections.ConfigDict,
    eval_step: Any,
    state: TrainState,
    source: Any,
    dp: parallel.DataParallel,
    rows_only: bool = False,
) -> dict[str, float]:
    result = evaluation.predict(
        eval_step,
        state,
        input_lib.make_eval_batches(config, source, rows_only=rows_only),
        dp.padded_size(config.eval_batch_size),
        put=dp.put_global_batch,
    )
    return metrics.summary(result)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, overwrite: bool = False
) -> dict[str, float]:
    """Train `config` in `workdir` (resuming from its latest checkpoint); return val metrics.

    A workdir holding a run with a different config is refused unless `overwrite`, which
    discards that run and starts afresh (see `train/workdir.py`).
    """
    workdir = Path(workdir)
    configuration.validate(config)
    is_main = jax.process_index() == 0
    if is_main:
        workdir_lib.prepare(config, workdir, overwrite)

    # Input.
    tfds_dir = input_lib.resolve_tfds_dir(config, workdir)
    train_source = input_lib.load_training_split(config, tfds_dir, "train")
    val_source = input_lib.load_training_split(config, tfds_dir, "validation")
    steps_per_epoch, total_steps = plan_steps(config, len(train_source))
    local_batch = config.batch_size // jax.process_count()
    dp = parallel.DataParallel.create(config.get("parallel", "none"))
    dp.check_batch_size(config.batch_size)
    log.info("parallel=%s over %d devices", dp.mode, dp.num_devices)

    # Model and state (replicated on the mesh, so restores land on this run's devices).
    model, spec = build_model_and_spec(config, tfds_dir, bn_axis_name=dp.axis_name)
    phase_list = phases.parse_phases(config.init.phases, steps_per_epoch)
    tx = phases.run_optimizer(config, total_steps, steps_per_epoch)
    size = int(config.data.image_size)
    ema_decay = float(config.optimizer.get("ema_decay", 0.0))
    state = create_train_state(model, tx, (size, size, 3), int(config.seed), ema=ema_decay > 0,
                               compiler_options=init_compiler_options())
    state = init_weights.initialise(state, config.init)  # a resume overrides it
    ckpt = Checkpoints(workdir)
    calibrate = int(config.init.get("recalibrate_bn_images", 0))
    if config.init.checkpoint and calibrate > 0 and ckpt.latest_step() is None:  # fresh only
        images = bn_recalibration.calibration_images(config, train_source, calibrate)
        state = bn_recalibration.recalibrate_state(model, state, images)
    state = dp.replicate(state)
    log.info("model %s: %s parameters", config.model.name, f"{count_params(state.params):,}")

    dspec = distill.DistillSpec.from_config(config, spec)
    view_targets = distill.teacher_cache(config, tfds_dir) if dspec else None
    balance = str(config.tasks.get("age_balance", "none"))
    age_weights = None if balance == "none" else age_balance.age_weights(
        evaluation.train_ages(train_source), spec.max_age, balance,
        float(config.tasks.get("age_balance_sigma", 2.0)),
        float(config.tasks.get("age_balance_cap", 5.0)))

    placement = device_data.choose_placement(config, [train_source, val_source], dp.mode)
    ckpt_every = int(config.get("checkpoint_every_steps", 0)) or steps_per_epoch
    k = calls_lib.steps_per_call(config)
    call_size = functools.partial(multi_step.call_size, steps_per_call=k,
                                  boundaries=(steps_per_epoch, ckpt_every),
                                  total_steps=total_steps)
    batches = input_lib.make_train_iterator(config, train_source, local_batch,
                                            rows_only=placement.on_device,
                                            view_targets=view_targets)
    if k > 1:
        batches = multi_step.StackedBatches(batches, call_size)
    train_iter = DevicePrefetcher(
        batches,
        put=functools.partial(dp.put_batch, stacked=k > 1),
        size=int(config.get("prefetch", 2)),
    )
    restored = ckpt.restore_latest(state, train_iter)
    meta: dict = {}
    if restored is not None:
        state, meta = restored
        log.info("resumed from step %d (%s)", meta["step"], meta)
        if not meta["data_restored"]:
            log.warning(
                "checkpoint written by %s processes, this run has %d: the per-process data "
                "iterators cannot be restored; continuing from the same global position "
                "(step %d x batch %d)",
                meta.get("process_count"),
                jax.process_count(),
                meta["step"],
                config.batch_size,
            )
            input_lib.seek(train_iter, meta["step"])
        if k > 1:
            batches.seek_step(meta["step"])

    skip_nonfinite = bool(config.get("skip_nonfinite", False))
    guard = NonFiniteGuard(skip_nonfinite, meta.get("skipped_nonfinite", 0), ckpt.latest_step())

    # Compiled calls: one per-device body, wrapped for config.parallel, data.placement and
    # steps_per_call (train/calls.py).
    compiled = calls_lib.build(
        config, dp,
        make_train_step(model, tx, spec, axis_name=dp.axis_name, skip_nonfinite=skip_nonfinite,
                        ema_decay=ema_decay, phases=phase_list, age_weights=age_weights,
                        distill_spec=dspec),
        make_eval_step(model, spec), placement, train_source, val_source,
    )
    train_step, eval_step = compiled.train, compiled.evaluate

    writer = MetricWriter(workdir, enabled=is_main)
    step = int(jax.device_get(state.step))
    val_metrics: dict[str, float] = {}
    pending = None
    bar = tqdm(total=total_steps, initial=step, disable=not is_main, unit="step", mininterval=2.0)
    logger = _TrainLogger(writer, bar, config.batch_size, config.log_every_steps, step)
    try:
        while step < total_steps:
            batch = next(train_iter)
            state, step_metrics = train_step(state, batch)
            step += call_size(step) if k > 1 else 1
            faults.maybe_kill("step", step)
            if pending is not None:  # metrics one step late: never wait on the step just sent
                guard.check(*pending)
                logger(*pending)
            pending = (step, step_metrics)
            end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
            save_now = end_of_epoch or step % ckpt_every == 0
            if save_now:  # never validate or checkpoint a non-finite state
                guard.check(step, step_metrics)
            if end_of_epoch:
                logger(*pending, force=True)
                pending = None
                val_metrics = validate_split(config, eval_step, state, val_source, dp,
                                             rows_only=placement.on_device)
                writer.write(step, val_metrics, prefix="val/")
                writer.write(
                    step,
                    {"epoch": step / steps_per_epoch, "skipped_nonfinite": guard.skipped},
                    prefix="train/",
                )
                bar.write(_format_val(step, steps_per_epoch, val_metrics))
                meta = {"step": step, "epoch": step / steps_per_epoch, "val": val_metrics}
                ckpt.save_best(step, state, {"loss": val_metrics["loss"]}, meta)
            if save_now:
                ckpt.save_latest(
                    step,
                    state,
                    train_iter,
                    {"step": step, "val": val_metrics, "skipped_nonfinite": guard.skipped},
                )
                guard.last_checkpoint = step
        bar.update(0)
    finally:
        bar.close()
        ckpt.wait()
        ckpt.close()
        writer.close()
    if is_main:
        from agr_jax import plots
        from agr_jax.train.metric_writer import read_metrics

        curves = plots.training_curves(read_metrics(workdir), workdir / "training_curves.png")
        log.info("training curves: %s", curves)
    return val_metrics


class _TrainLogger:
    """Progress bar every step; scalars (with images/s since the last log) every N steps."""

    def __init__(self, writer, bar, batch_size: int, every: int, step: int):
        self.writer, self.bar, self.batch_size, self.every = writer, bar, batch_size, every
        self.last_step, self.last_time = step, time.perf_counter()

    def __call__(self, step: int, step_metrics: dict, force: bool = False) -> None:
        self.bar.update(step - self.bar.n)
        # A multiple of `every` passed since the last log (steps_per_call > 1 jumps over it).
        if (step // self.every == self.last_step // self.every and not force) or \
                step == self.last_step:
            return
        scalars = _host_scalars(step_metrics)
        now = time.perf_counter()
        scalars["images_per_sec"] = (
            (step - self.last_step) * self.batch_size / max(now - self.last_time, 1e-9)
        )
        self.last_step, self.last_time = step, now
        self.writer.write(step, scalars, prefix="train/")
        self.bar.set_postfix(
            loss=f"{scalars['loss']:.4f}", img_s=f"{scalars['images_per_sec']:.0f}"
        )


def _format_val(step: int, steps_per_epoch: int, m: dict[str, float]) -> str:
    return (
        f"epoch {step / steps_per_epoch:.2f} step {step}: val loss {m['loss']:.4f} "
        f"age MAE {m['age_mae']:.2f} gender acc {m['gender_acc']:.4f} race acc {m['race_acc']:.4f}"
    )
