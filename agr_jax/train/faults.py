"""Fault injection for the crash-safety tests: SIGKILL this process at a chosen point.

Set ``AGR_JAX_FAULT=POINT:STEP`` (e.g. ``step:17`` right after step 17 is dispatched, or
``save:12`` right after the checkpoint save of step 12 has started and before it is
finalised). Unset, :func:`maybe_kill` is one dictionary lookup. SIGKILL gives the process no
chance to clean up, exactly like a preempted machine or the OOM killer.
"""

from __future__ import annotations

import os
import signal

ENV = "AGR_JAX_FAULT"
POINTS = ("step", "save")


def _parse(value: str) -> tuple[str, int]:
    point, _, step = value.partition(":")
    if point not in POINTS or not step.isdigit():
        raise ValueError(f"{ENV}={value!r}: expected POINT:STEP with POINT in {POINTS}")
    return point, int(step)


def maybe_kill(point: str, step: int) -> None:
    value = os.environ.get(ENV)
    if value and _parse(value) == (point, int(step)):
        os.kill(os.getpid(), signal.SIGKILL)
