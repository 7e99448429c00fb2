"""Decode once, augment every epoch: a prepared split decoded at the training size, on disk.

On a host whose cores also run the training step (CPU training, or a GPU host with few
cores per device), decoding every JPEG every epoch takes cores from the step. Face crops at
training sizes are small once decoded (UTKFace's 14.8k training crops at 80 px: 285 MB), so
the split is decoded once into `images.npy` beside the prepared build, and the pipeline
copies rows of that memory map (~2.5 MB per batch) instead of decoding. Augmentation still
runs per batch with the same counter-based draws, so the batches are exactly those of the
decoding pipeline. The file is memory-mapped, so grain workers share it through the page
cache: only its path is pickled.

The cache sits inside the prepared build's version directory (whose name carries the
prepare settings) and records a hash of the build's `dataset_info.json`, so a rebuilt split
is never read through a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from agr_jax.data import pipeline, tfds_builders

log = logging.getLogger(__name__)

CACHE_DIR = "decoded"
META_FILE = "meta.json"
BUILD_BATCH = 256


def decoded_bytes(num_records: int, image_size: int) -> int:
    return int(num_records) * int(image_size) ** 2 * 3


def cache_dir(tfds_dir: str | Path, split: str, image_size: int) -> Path:
    safe_split = re.sub(r"[^A-Za-z0-9_.-]+", "_", split)
    return tfds_builders.resolve_dir(tfds_dir) / CACHE_DIR / f"{safe_split}_{int(image_size)}px"


def build_fingerprint(tfds_dir: str | Path) -> str:
    info = tfds_builders.resolve_dir(tfds_dir) / "dataset_info.json"
    return hashlib.sha256(info.read_bytes()).hexdigest()[:16]


def _expected_meta(tfds_dir: str | Path, num_records: int, image_size: int) -> dict:
    return {"count": int(num_records), "image_size": int(image_size),
            "build": build_fingerprint(tfds_dir)}


def _is_complete(directory: Path, expected: dict) -> bool:
    meta_path = directory / META_FILE
    if not meta_path.exists():
        return False
    meta = json.loads(meta_path.read_text())
    return all(meta.get(key) == value for key, value in expected.items())


def build(source: Any, directory: Path, image_size: int, meta: dict) -> dict:
    """Decodes every record of `source` into `directory` (written aside, then renamed in)."""
    size = int(image_size)
    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = _write(source, tmp, size, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists():  # stale (an older prepared build): replaced whole
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return meta


def _write(source: Any, tmp: Path, size: int, meta: dict) -> dict:
    n = len(source)
    start_time = time.perf_counter()
    images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, size, size, 3))
    labels = {key: np.empty(n, dtype) for key, dtype in pipeline.LABEL_DTYPES.items()}
    for start in range(0, n, BUILD_BATCH):
        indices = list(range(start, min(n, start + BUILD_BATCH)))
        columns = pipeline.read_columns(source, indices, ["image", *labels])
        for offset, data in enumerate(columns["image"]):
            try:
                images[start + offset] = pipeline.decode_image(data, size)
            except Exception as err:  # name the record: the decode error alone does not
                name = pipeline.read_columns(source, [start + offset], ["file_name"])
                raise ValueError(f"record {start + offset} ({name['file_name'][0]}): cannot "
                                 f"decode its image for the decoded cache: {err}") from err
        for key in labels:
            labels[key][start:start + len(indices)] = columns[key]
    images.flush()
    del images
    np.savez(tmp / "labels.npz", **labels)
    meta = {**meta, "seconds": round(time.perf_counter() - start_time, 2)}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


class DecodedSource:
    """`source` whose `read_columns` serves images already decoded at `image_size`.

    `decoded_size` tells the pipeline not to decode. Labels come from the cache too; any
    other column (`file_name`, ...) and `source[i]` are the original records.
    """

    def __init__(self, source: Any, directory: str | Path, image_size: int):
        self.source = source
        self.directory = Path(directory)
        self.decoded_size = int(image_size)
        with np.load(self.directory / "labels.npz") as labels:
            self._labels = {key: labels[key] for key in labels.files}
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:  # opened lazily: once per process (grain workers too)
            self._images = np.load(self.directory / "images.npy", mmap_mode="r")
        return self._images

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """Every label column of the split, in record order."""
        return self._labels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        return self.source[index]

    def read_columns(self, indices: Sequence[int], keys: Sequence[str]) -> dict:
        rows = np.asarray(indices, np.int64)
        rest = [key for key in keys if key != "image" and key not in self._labels]
        out = pipeline.read_columns(self.source, indices, rest) if rest else {}
        for key in keys:
            if key == "image":
                out[key] = self.images[rows]  # fancy indexing: a writable copy
            elif key in self._labels:
                out[key] = self._labels[key][rows]
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __repr__(self) -> str:
        return f"DecodedSource({self.directory}, {self.source!r})"


def maybe_cached(source: Any, tfds_dir: str | Path, split: str, image_size: int,
                 max_gb: float) -> Any:
    """`source` served from its decoded cache (built on first use) when the decoded split
    fits in `max_gb`; else `source` itself (logged). Every process must call it: process 0
    builds, the others wait for it."""
    need = decoded_bytes(len(source), image_size)
    if max_gb <= 0:
        return source
    if need > max_gb * 2**30:
        log.info("decoded cache off for %s: %.2f GB at %d px > data.decoded_cache_gb=%g; "
                 "decoding every epoch", split, need / 2**30, image_size, max_gb)
        return source
    directory = cache_dir(tfds_dir, split, image_size)
    expected = _expected_meta(tfds_dir, len(source), image_size)
    if jax.process_index() == 0 and not _is_complete(directory, expected):
        meta = build(source, directory, image_size, expected)
        log.info("decoded cache: %d %s images at %d px into %s (%.0f MB, %.1f s)",
                 len(source), split, image_size, directory, need / 2**20, meta["seconds"])
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"agr_jax.decoded_cache.{split}")
    if not _is_complete(directory, expected):
        raise FileNotFoundError(f"{directory}: decoded cache missing or incomplete after the "
                                "build (is the prepared dataset on a filesystem every "
                                "process shares?)")
    return DecodedSource(source, directory, image_size)
