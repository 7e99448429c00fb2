"""Records to JSON lines or CSV (chosen by the file suffix); the same fields either way."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from agr_jax.inference.predictor import RECORD_FIELDS

EXTRA_FIELDS = ("kind", "frame", "track", "frames", "frame_count", "scored_frames")
FORMATS = (".jsonl", ".csv")


class RecordWriter:
    """Streams records to `path` (.jsonl or .csv) or, without a path, JSON lines to `stream`."""

    def __init__(self, path: str | Path | None, stream: TextIO | None = None):
        self.csv = None
        if path is None:
            self.file, self.owned = stream, False
            return
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise ValueError(f"--out {path}: expected a {' or '.join(FORMATS)} file name")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file, self.owned = open(path, "w", newline=""), True  # noqa: SIM115
        if suffix == ".csv":
            self.csv = csv.DictWriter(self.file, fieldnames=[*RECORD_FIELDS, *EXTRA_FIELDS],
                                      extrasaction="ignore")
            self.csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                               for k, v in record.items()})
        elif self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.owned:
            self.file.close()
