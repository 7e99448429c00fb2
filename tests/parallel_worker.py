"""Subprocess side of tests/test_parallel.py (the device count is fixed when JAX starts).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel_worker.py OUT CFG

Runs 20 steps of each `config.parallel` mode on the same global batches and saves the final
parameters, trace and compile counts, and eval outputs to OUT/modes.npz + OUT/modes.json;
then, when CFG (a config JSON) is given, trains through the real loop under
`jax.transfer_guard("disallow")` in OUT/workdir (the checkpoint the test restores on 1 device).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np

from agr_jax import models, tasks
from agr_jax.train import parallel
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import create_train_state
from agr_jax.train.step import make_eval_step, make_train_step
from tests.conftest import FAST_COMPILE

SPEC = tasks.TaskSpec()
SIZE, GLOBAL_BATCH, STEPS = 16, 16, 20
OPTIMIZER = {"name": "sgd", "learning_rate": 0.05, "schedule": "cosine", "grad_clip": 1.0}


def global_batches(n: int, batch: int = GLOBAL_BATCH, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        gender = rng.integers(0, 2, batch).astype(np.int32)
        race = rng.integers(0, 5, batch).astype(np.int32)
        age = rng.integers(1, 90, batch).astype(np.float32)
        image = rng.normal(size=(batch, SIZE, SIZE, 3)).astype(np.float32) * 0.5
        image[..., 0] += gender[:, None, None]
        out.append({"image": image, "age": age, "gender": gender, "race": race})
    return out


class CompileCounter:
    """Counts the compilations JAX asks for: XLA backend compiles plus hits of the persistent
    compilation cache (tests/conftest.py shares one), which skip the backend compile."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)

    def _on_duration(self, event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def _on_event(self, event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.count += 1


def tiny_model(bn_axis_name: str | None):
    return models.build(
        "ror",
        outputs=SPEC.output_sizes(),
        width=4,
        stage_sizes=(1,),  # one stage: half the compile time of two
        head_hidden=(16,),
        bn_axis_name=bn_axis_name,
    )


def run_mode(mode: str, initial, batches: list[dict], compiles: CompileCounter) -> dict:
    """20 steps of `mode` from the `initial` state; all device work under the guard."""
    dp = parallel.DataParallel.create(mode)
    model = tiny_model(dp.axis_name)
    tx = make_optimizer(OPTIMIZER, STEPS)
    state = dp.replicate(initial)
    traces = {"train": 0, "eval": 0}
    body = make_train_step(model, tx, SPEC, axis_name=dp.axis_name)
    eval_body = make_eval_step(model, SPEC)

    def counted(state, batch):
        traces["train"] += 1
        return body(state, batch)

    def counted_eval(state, batch):
        traces["eval"] += 1
        return eval_body(state, batch)

    train_step, eval_step = dp.train_step(counted), dp.eval_step(counted_eval)
    losses = []
    with jax.transfer_guard("disallow"):
        state, metrics = train_step(state, dp.put_batch(batches[0]))
        compiles_after_first = compiles.count
        for batch in batches[1:]:
            state, next_metrics = train_step(state, dp.put_batch(batch))
            losses.append(float(jax.device_get(metrics["loss"])))  # one step late
            metrics = next_metrics
        losses.append(float(jax.device_get(metrics["loss"])))
        recompiles = compiles.count - compiles_after_first
        from agr_jax import evaluation

        # Eval batch 10 (padded to a multiple of the device count) and a partial last batch.
        eval_batches = [{k: v[s] for k, v in batches[0].items()} for s in (np.s_[:10], np.s_[10:])]
        outputs = evaluation.predict(
            eval_step, state, eval_batches, dp.padded_size(10), put=dp.put_global_batch
        )
        step = int(jax.device_get(state.step))
    params = jax.device_get(state.params)
    return {
        "traces": traces,
        "recompiles_after_first_step": recompiles,
        "losses": losses,
        "step": step,
        "num_devices": dp.num_devices,
        "params": {jax.tree_util.keystr(k): v for k, v in jax.tree.leaves_with_path(params)},
        "eval": {k: outputs[k] for k in ("age_pred", "loss", "race_prob")},
    }


def main(out: str, config_json: str | None = None) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    batches = global_batches(STEPS)
    compiles = CompileCounter()
    report, arrays = {}, {}
    tx = make_optimizer(OPTIMIZER, STEPS)
    # Cheap-compile XLA options for the shared initial state only (every mode starts from
    # these same values; the steps compared are compiled as in training).
    initial = jax.device_get(create_train_state(tiny_model(None), tx, (SIZE, SIZE, 3), seed=0,
                                                compiler_options=FAST_COMPILE))
    for mode in parallel.MODES:
        result = run_mode(mode, initial, batches, compiles)
        for key in ("params", "eval"):
            arrays.update({f"{mode}/{key}/{k}": v for k, v in result.pop(key).items()})
        report[mode] = result
    np.savez(out_dir / "modes.npz", **arrays)
    if config_json:
        from agr_jax.train.loop import train_and_evaluate

        logging.getLogger().setLevel(logging.INFO)
        config = ml_collections.ConfigDict(json.loads(Path(config_json).read_text()))
        with jax.transfer_guard("disallow"):
            report["loop_val"] = train_and_evaluate(config, out_dir / "workdir")
    (out_dir / "modes.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
