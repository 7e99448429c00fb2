"""The compiled calls the loop makes, assembled from `data.placement` and `steps_per_call`.

    host,   K = 1: step(state, batch)                         (today's path, unchanged)
    device, K = 1: step(state, split, rows)                   gather inside the step
    any,    K > 1: the above scanned over [K, ...] blocks     (`multi_step.py`)

The loop sees the same two functions either way: `train(state, batch)` and
`evaluate(state, batch)`, the device copies bound in.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

import ml_collections

from agr_jax.train import device_data, multi_step, parallel

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainCalls:
    train: Callable[[Any, Any], tuple[Any, dict]]
    evaluate: Callable[[Any, Any], dict]
    put: Callable[[dict], dict]  # a host batch (or K-step block) onto the devices
    steps_per_call: int
    on_device: bool


def steps_per_call(config: ml_collections.ConfigDict) -> int:
    k = config.get("steps_per_call", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"config.steps_per_call: expected an int >= 1, got {k!r}")
    return k


def build(config: ml_collections.ConfigDict, dp: parallel.DataParallel, train_body: Callable,
          eval_body: Callable, placement: device_data.Placement, train_source: Any,
          val_source: Any) -> TrainCalls:
    """`train_body`/`eval_body`: the per-device steps (`step.py`), wrapped for the mesh."""
    k = steps_per_call(config)
    on_device = placement.on_device
    if on_device:
        train_body, eval_body = device_data.gathering(train_body), device_data.gathering(eval_body)
    if k > 1:
        train_body = multi_step.scan_steps(train_body)
    train = dp.train_step(train_body, with_split=on_device, stacked=k > 1)
    evaluate = dp.eval_step(eval_body, with_split=on_device)
    if on_device:
        train_split = device_data.put_split(train_source, dp.mesh)
        val_split = device_data.put_split(val_source, dp.mesh)
        train = functools.partial(_bound, train, train_split)
        evaluate = functools.partial(_bound, evaluate, val_split)
    log.info("%s; steps_per_call=%d", placement.reason, k)
    return TrainCalls(train, evaluate, functools.partial(dp.put_batch, stacked=k > 1), k,
                      on_device)


def _bound(call: Callable, split: dict, state: Any, batch: Any) -> Any:
    return call(state, split, batch)
