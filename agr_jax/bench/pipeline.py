"""Input pipeline throughput against its two yardsticks: the JPEG decode limit and a naive loop.

The decode limit decodes, in a tight loop on one core, the JPEG bytes of exactly the records a
pipeline window reads; the pipeline reads them from the prepared ArrayRecord through the real
grain pipeline (batched read, decode, resize, augment, batch); the naive loop is a
Keras-generator style loop over the first `sample` records' files on disk (PIL open, resize,
/255).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agr_jax.bench.alternate import paired_ratio
from agr_jax.data import pipeline, prepare, synthetic, tfds_builders

AUGMENT = {"flip": True, "pad_crop": 4, "noise_std": 0.0, "rotate_deg": 0.0}


@dataclasses.dataclass
class BenchData:
    """The prepared training split plus the folder its JPEG files came from."""

    source: Any
    image_dir: Path
    description: str
    tfds_dir: Path


def default_data_dir(repo_root: Path) -> Path:
    """`<repo>/../shared/utkface`, where the real crops live on the project machines."""
    return repo_root.parent / "shared" / "utkface"


def prepare_data(data_dir: Path | None, work_dir: Path, synthetic_num: int = 2000) -> BenchData:
    """Prepared `train` split of `data_dir` when it holds images, else of a synthetic set.

    Both builds are cached under `work_dir` (prepare reuses a build whose settings match).
    """
    work_dir = Path(work_dir)
    if data_dir is not None and Path(data_dir).is_dir() and any(Path(data_dir).glob("*.jpg*")):
        image_dir = Path(data_dir)
        description = f"real UTKFace crops from {image_dir}"
        tfds_dir = work_dir / "tfds_real"
    else:
        image_dir = work_dir / f"synthetic_utkface_{synthetic_num}"
        if not any(image_dir.glob("*.jpg")):
            synthetic.generate(image_dir, synthetic_num, seed=0, size=200)
        missing = f" ({data_dir} not found)" if data_dir is not None else ""
        description = f"synthetic 200px faces ({synthetic_num}) in {image_dir}{missing}"
        tfds_dir = work_dir / "tfds_synthetic"
    prepare.prepare(image_dir, tfds_dir, seed=0)
    return BenchData(tfds_builders.load_split(tfds_dir, "train"), image_dir, description, tfds_dir)


def decode_limit_img_s(jpegs: list[bytes], image_size: int, seconds: float) -> float:
    """Images/s of `pipeline.decode_image` (decode at reduced DCT scale + resize), one thread."""
    n, start = 0, time.perf_counter()
    while True:
        for data in jpegs:
            pipeline.decode_image(data, image_size)
        n += len(jpegs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


WARMUP_BATCHES = 3  # per pipeline window: worker start-up and buffer fill


def window_jpegs(source: Any, batch: int, num_batches: int) -> list[bytes]:
    """The JPEG bytes a pipeline window reads (its first batches of the seed-0 index stream).

    The decode limit decodes exactly these: over the first 1,024 records instead (a third of
    the working set) it read 4,515-4,706 img/s against 4,201-4,358 for these, the cache
    speaking, not the pipeline (2026-12-02).
    """
    stream = pipeline.ShuffledIndexBatches(len(source), batch, seed=0)
    indices = np.concatenate([stream[i] for i in range(WARMUP_BATCHES + num_batches)])
    return pipeline.read_columns(source, indices, ["image"])["image"]


def pipeline_img_s(source: Any, image_size: int, batch: int, workers: int, num_batches: int,
                   warmup_batches: int = WARMUP_BATCHES) -> float:
    """Images/s out of `make_dataset` (train: shuffle, decode, resize, augment, batch).

    workers=1 runs the pipeline in-process with one read thread (one core's worth of work);
    workers>1 uses grain `mp_prefetch` with that many processes.
    """
    ds = pipeline.make_dataset(
        source, image_size=image_size, batch_size=batch, train=True, seed=0, augment=AUGMENT,
        worker_count=workers if workers > 1 else 0, read_threads=1 if workers <= 1 else 2,
    )
    it = iter(ds)
    for _ in range(warmup_batches):  # worker start-up and buffer fill are not throughput
        next(it)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    elapsed = time.perf_counter() - start
    it.close()  # stops grain's workers/threads now, not whenever the iterator is collected
    return num_batches * batch / elapsed


def naive_img_s(paths: list[Path], image_size: int, batch: int) -> float:
    """Keras-generator style: PIL open each file, convert, resize, /255, stack per batch.

    Each file is read once untimed first, so it is timed from the page cache as the
    pipeline's records are: a cold disk measured 237 img/s here against ~1,400 warm, a
    comparison of disks, not of loops.
    """
    for p in paths:
        p.read_bytes()
    start = time.perf_counter()
    for i in range(0, len(paths) - batch + 1, batch):
        images = [
            np.asarray(
                Image.open(p).convert("RGB").resize((image_size, image_size)), np.float32
            ) / 255.0
            for p in paths[i : i + batch]
        ]
        np.stack(images)
    n = (len(paths) // batch) * batch
    return n / (time.perf_counter() - start)


def run(data: BenchData, image_size: int, batch: int, workers: int, sample: int,
        num_batches: int, decode_seconds: float = 2.0, windows: int = 3) -> dict[str, Any]:
    """The `pipeline` section of the benchmark JSON.

    The decode limit and the single-worker pipeline are timed in alternating windows and
    compared as the median of per-window-pair ratios (`alternate.paired_ratio`), like the
    other side-by-side ratios: this host's speed drifts by 10-20 % over a minute, which a
    one-off measurement of each side turned into ratios of 0.60-0.78 for the same code.
    """
    n = min(sample, len(data.source))
    records = [data.source[i] for i in range(n)]
    jpegs = window_jpegs(data.source, batch, num_batches)
    paths = [data.image_dir / str(r["file_name"]) for r in records]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"prepared records name files missing from {data.image_dir}: "
                                f"{[str(p) for p in missing[:3]]}")
    # Untimed: brings the records the windows read into the page cache (the decode limit
    # decodes bytes already in memory). Without it the first window read 712-3,094 img/s
    # against 3,275-3,745 for the others, a measure of the disk (2026-12-02).
    pipeline_img_s(data.source, image_size, batch, 1, num_batches)
    decode_windows, one_windows = [], []
    for _ in range(windows):  # each window as long as a one-off measurement was
        decode_windows.append(decode_limit_img_s(jpegs, image_size, decode_seconds))
        one_windows.append(pipeline_img_s(data.source, image_size, batch, 1, num_batches))
    decode = statistics.median(decode_windows)
    naive = naive_img_s(paths, image_size, batch)
    img_s = {"1": statistics.median(one_windows)}
    for w in sorted({workers} - {1}):
        img_s[str(w)] = pipeline_img_s(data.source, image_size, batch, w, num_batches)
    best = max(img_s.values())
    per_worker = img_s["1"]
    return {
        "source": data.description,
        "image_size": image_size,
        "batch": batch,
        "augment": AUGMENT,
        "decode_limit_img_s": decode,
        "decode_limit_images": len(jpegs),
        "img_s": img_s,
        "img_s_per_worker": per_worker,
        "per_worker_vs_decode_limit": paired_ratio(one_windows, decode_windows),
        "per_worker_vs_decode_limit_of_medians": per_worker / decode,
        "windows": {"decode_limit_img_s": decode_windows, "one_worker_img_s": one_windows},
        "naive_img_s": naive,
        "speedup_vs_naive": best / naive,
        "workers": workers,
    }
