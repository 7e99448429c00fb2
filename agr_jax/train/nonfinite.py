"""Host side of the non-finite guard: stop (or count skipped steps) on NaN/Inf losses.

The train step reports `nonfinite` (1.0 when the loss, a task loss or the gradient norm is
NaN/Inf) and, with `skip_nonfinite`, has already kept the previous parameters and optimiser
state on device. The loop checks each step's flag one step late (the device is busy with the
next step by then) and always before a checkpoint, so a bad state is never saved.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import jax

from agr_jax import tasks

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss or gradient; the message names step and tasks."""


class NonFiniteGuard:
    def __init__(self, skip: bool, skipped: int = 0, last_checkpoint: int | None = None):
        self.skip = skip
        self.skipped = int(skipped)
        self.last_checkpoint = last_checkpoint
        self._checked = -1

    def check(self, step: int, step_metrics: dict[str, Any]) -> None:
        """Inspect the metrics of `step` (once); raise or count when they are non-finite."""
        if step <= self._checked:
            return
        self._checked = step
        if not float(step_metrics["nonfinite"]):
            return
        host = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        bad = [t for t in tasks.TASKS if not math.isfinite(host.get(f"loss_{t}", 0.0))]
        what = (
            f"loss of task(s) {', '.join(bad)} ("
            + ", ".join(f"loss_{t}={host[f'loss_{t}']}" for t in bad)
            + f"), grad_norm={host['grad_norm']}"
            if bad
            else f"gradient (losses finite; grad_norm={host['grad_norm']})"
        )
        if self.skip:
            self.skipped += 1
            log.warning(
                "step %d: non-finite %s; update skipped (%d skipped so far)",
                step, what, self.skipped,
            )
            return
        kept = (
            f"the last good checkpoint (step {self.last_checkpoint}) is kept"
            if self.last_checkpoint is not None
            else "no checkpoint had been written yet"
        )
        raise NonFiniteError(
            f"step {step}: non-finite {what}; stopping, {kept}. "
            "Set config.skip_nonfinite=True to skip such steps instead."
        )
