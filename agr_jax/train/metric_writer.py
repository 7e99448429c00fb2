"""Metrics to JSON lines and TensorBoard event files (tensorboardX: no TensorFlow runtime)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


class MetricWriter:
    """Writes only where `enabled` (process 0 in multi-host runs)."""

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            from tensorboardX import SummaryWriter

            workdir = Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, scalars: dict[str, Any], prefix: str = "") -> None:
        if not self.enabled:
            return
        row = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **row}) + "\n")
        for k, v in row.items():
            self._tb.add_scalar(k, v, int(step))

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def read_metrics(workdir: str | Path) -> list[dict[str, float]]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
