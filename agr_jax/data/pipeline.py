"""grain input pipeline: random-access source -> batches of uint8 images and labels.

    train: ShuffledIndexBatches (a seeded permutation per epoch; this process' rows of each
           global batch)                                                 [indices, per batch]
    eval:  range(len(source)) -> ds[index::count] -> batch of indices
      -> LoadBatch: one batched read, decode + resize, augment                      [per batch]
         (a `decoded_cache.DecodedSource` skips the decode: rows of a decoded memory map)
      -> to_iter_dataset -> mp_prefetch(worker_count)

Everything per record happens inside one grain element per *batch*: the ArrayRecord read is
one call for the batch (about half the cost of single random reads), grain's per-element
bookkeeping and worker IPC are paid once per batch instead of once per image, and images are
decoded straight into the batch array (no stacking copy). Grain sees one element per batch
from the index stream on; its iterator state (`next_index` counts batches) is what
checkpoints hold.

Augmentation draws come from a counter-based hash of (seed, position of the record in the
global stream), not from stateful generators: the same seed gives the same batches whatever
the worker or process count, and drawing them costs microseconds per batch. With
`augment_on` "device" (training's "auto" default when there is no rotation or noise) the
draws travel with the batch (`FLIP_CROP`) and the train step flips and crops.

Images stay uint8 all the way to the accelerator: the model normalises them on device
(`models.heads.normalize_pixels`), which moves 4x fewer bytes through worker IPC and the
host-to-device copy and takes the float conversion off the host's critical path.

With several workers, whole batches go to workers round-robin and come back in order. Batches
are formed from the index stream before the workers (google/grain#1129: batching inside each
worker drops each worker's remainder), so no record is dropped and the batches do not depend
on the worker count.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np
import simplejpeg
from absl import flags
from PIL import Image

AUGMENT_KEYS = {
    "flip": "random horizontal flip (bool)",
    "rotate_deg": "uniform random rotation in [-deg, deg], bilinear, edge-black (float)",
    "pad_crop": "reflect-pad by N pixels then random crop back to image_size (int)",
    "noise_std": "Gaussian noise std in [0, 1] pixel units, then clip (float)",
}
LABEL_DTYPES = {"age": np.float32, "gender": np.int32, "race": np.int32}
# Where flip and pad-crop run: "host" (here, in LoadBatch), "device" (inside the jitted train
# step, `train/device_augment.py`: the batch then carries FLIP_CROP instead of moved pixels),
# or "auto" (the device whenever no rotation or noise is asked for).
AUGMENT_ON = ("auto", "host", "device")
FLIP_CROP = "flip_crop"
# With `rows_only` (the split already on the device, `train/device_data.py`) a batch carries
# its records' row numbers instead of pixels: the step gathers them from the device copy.
ROWS = "rows"
# Distillation: each train record's targets for the view it was drawn in (`ViewTargets`).
TEACHER = "teacher"


@dataclasses.dataclass(frozen=True)
class ViewTargets:
    """Targets computed once per record for a fixed set of views (the teacher's outputs,
    `train/distill.py`). A train batch then draws each record's view from this set instead of
    a free flip and pad-crop, and carries the targets of that view (`TEACHER`), so the model
    learns from outputs of the very pixels it sees."""

    views: np.ndarray  # [V, 3] int32 (flip, dy, dx), as `flip_crop_params` gives
    targets: np.ndarray  # [N, V, K] float32, row n = record n of the source

    def __post_init__(self):
        if self.views.ndim != 2 or self.views.shape[1] != 3 or self.targets.ndim != 3 \
                or self.targets.shape[1] != self.views.shape[0]:
            raise ValueError(f"ViewTargets: expected views [V, 3] and targets [N, V, K], got "
                             f"{self.views.shape} and {self.targets.shape}")

    def draw(self, draws: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flip_crop [B, 3], targets [B, K]) of the view each record's draw picks."""
        num_views = len(self.views)
        view = np.minimum((_unit(draws[:, 2]) * num_views).astype(np.int64), num_views - 1)
        rows = np.asarray(indices, np.int64)
        return self.views[view].astype(np.int32), self.targets[rows, view]


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decodes JPEG (or any PIL format) bytes to a uint8 [size, size, 3] RGB array.

    simplejpeg decodes at the smallest DCT scale still >= size; PIL is the fallback
    (progressive/CMYK/non-JPEG). The final resize is PIL bilinear, antialiased.
    Non-square images are resized without keeping the aspect ratio (UTKFace is square).
    """
    try:
        img = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=size, min_width=size, strict=False
        )
        if img.shape[0] == size and img.shape[1] == size:
            return img
        pil = Image.fromarray(img)
    except ValueError:
        pil = Image.open(io.BytesIO(data))
        pil.draft("RGB", (size, size))
        pil = pil.convert("RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pil)


def _validate_augment(augment: Mapping | None) -> dict[str, Any]:
    augment = dict(augment or {})
    unknown = set(augment) - set(AUGMENT_KEYS)
    if unknown:
        raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {AUGMENT_KEYS}")
    out = {
        "flip": bool(augment.get("flip", False)),
        "rotate_deg": float(augment.get("rotate_deg", 0.0)),
        "pad_crop": int(augment.get("pad_crop", 0)),
        "noise_std": float(augment.get("noise_std", 0.0)),
    }
    if out["rotate_deg"] < 0 or out["pad_crop"] < 0 or out["noise_std"] < 0:
        raise ValueError(f"augment values must be non-negative: {out}")
    return out


def augments_on_device(augment: Mapping | None, augment_on: str) -> bool:
    """Whether the train stream leaves flip and pad-crop to the step (see AUGMENT_ON).

    Only those two can move: they are pure indexing. Rotation must come before the crop
    and noise after it, so either one keeps all augmentation on the host.
    """
    if augment_on not in AUGMENT_ON:
        raise ValueError(f"augment_on: expected one of {AUGMENT_ON}, got {augment_on!r}")
    aug = _validate_augment(augment)
    host_only = [k for k in ("rotate_deg", "noise_std") if aug[k] > 0]
    if augment_on == "device" and host_only:
        raise ValueError(
            f"augment_on='device': {host_only} can only run on the host (flip and pad-crop "
            "are the device-side augmentations); set them to 0 or use augment_on='auto'")
    moves = aug["flip"] or aug["pad_crop"] > 0
    return augment_on != "host" and moves and not host_only


def reflect_index(index: Any, n: int, xp: Any = np) -> Any:
    """Indices outside [0, n) mirrored as numpy's 'reflect' padding does (edge not repeated).
    `xp`: the array module (`jax.numpy` inside the step, `train/device_augment.py`)."""
    period = 2 * (n - 1) if n > 1 else 1
    index = xp.abs(index) % period
    return xp.where(index >= n, period - index, index)


@functools.lru_cache(maxsize=64)
def _crop_table(size: int, n: int, pad: int) -> np.ndarray:
    """Source indices of every crop offset, [2 * pad + 1, size]: row `o` reads the
    reflect-padded pixels o - pad .. o - pad + size - 1 of an axis of length `n`."""
    offsets = np.arange(2 * pad + 1)[:, None] - pad
    return reflect_index(np.arange(size)[None, :] + offsets, n)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
NUM_DRAWS = 5  # per record: flip, angle, crop y, crop x, noise seed


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def augment_draws(seed: int, positions: np.ndarray) -> np.ndarray:
    """[n, NUM_DRAWS] uint64 random words for the records at `positions` of the stream.

    A pure function of (seed, position): no generator state to carry, so workers,
    processes and resumed runs draw the same augmentation for the same record.
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.asarray([seed % 2**64], np.uint64))[0]
        counters = (np.asarray(positions, np.uint64)[:, None] * np.uint64(NUM_DRAWS)
                    + np.arange(NUM_DRAWS, dtype=np.uint64))
        return _splitmix64(_splitmix64(counters) ^ key)


def _unit(words: np.ndarray) -> np.ndarray:
    """uint64 words -> float64 uniforms in [0, 1) (top 53 bits)."""
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _geometry(draws: np.ndarray, aug: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record: flip (bool), rotation angle in degrees, crop offset (y, x) in [0, 2 pad]."""
    u = _unit(draws)
    flips = bool(aug["flip"]) & (u[:, 0] < 0.5)
    angles = (2.0 * u[:, 1] - 1.0) * aug["rotate_deg"]
    pad = int(aug["pad_crop"])
    offsets = np.minimum((u[:, 2:4] * (2 * pad + 1)).astype(np.int64), 2 * pad)
    return flips, angles, offsets


def flip_crop_params(draws: np.ndarray, aug: Mapping) -> np.ndarray:
    """int32 [N, 3] (flip, dy, dx): the flip and pad-crop `augment_batch` would apply, as the
    shift of the crop window against the unpadded image (dy = offset y - pad), for
    `train.device_augment` to apply inside the step."""
    flips, _, offsets = _geometry(draws, aug)
    out = np.empty((len(draws), 3), np.int32)
    out[:, 0] = flips
    out[:, 1:] = offsets - int(aug["pad_crop"])
    return out


def augment_batch(images: np.ndarray, draws: np.ndarray, aug: Mapping) -> np.ndarray:
    """Geometric + noise augmentation of a uint8 [N, H, W, 3] batch, in place.

    Per image: flip, then rotation, then reflect-pad + random crop, then noise. Without
    rotation, flip and pad-crop read one reflect-padded copy of the whole batch (the same
    pixels as flipping, `np.pad(mode="reflect")` and slicing each image).
    """
    flips, angles, offsets = _geometry(draws, aug)
    pad = int(aug["pad_crop"])
    if aug["rotate_deg"] > 0:
        _flip_rotate_pad_crop(images, flips, angles, offsets, pad)
    elif pad:
        _flip_pad_crop(images, flips, offsets, pad)
    else:
        for i in np.flatnonzero(flips):
            images[i] = images[i, :, ::-1].copy()
    if aug["noise_std"] > 0:
        for i in range(images.shape[0]):
            # Noise in [0, 1] units, applied on the 0-255 grid (quantised to 1/255).
            rng = np.random.default_rng(int(draws[i, 4]))
            noise = rng.standard_normal(images[i].shape, dtype=np.float32)
            noisy = images[i] + np.float32(aug["noise_std"] * 255.0) * noise
            images[i] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return images


def _flip_pad_crop(images: np.ndarray, flips: np.ndarray, offsets: np.ndarray,
                   pad: int) -> None:
    """One `np.pad` of the batch, then one window copy per image. Reflect padding commutes
    with a horizontal flip, so a flipped image's crop at x offset `ox` is the padded window
    at `2 * pad - ox`, read backwards. Pixels are copied as whole 3-byte items (a void
    view): numpy reverses a row of uint8 triplets 2x slower than a row of items."""
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    src, dst = (_pixels(padded), _pixels(images)) if images.flags.c_contiguous else (
        padded, images)
    for i, ((oy, ox), flip) in enumerate(zip(offsets.tolist(), flips.tolist(), strict=True)):
        if flip:
            x0 = 2 * pad - ox
            dst[i] = src[i, oy : oy + h, x0 : x0 + w][:, ::-1]
        else:
            dst[i] = src[i, oy : oy + h, ox : ox + w]


def _pixels(images: np.ndarray) -> np.ndarray:
    """[N, H, W] view of a C-contiguous [N, H, W, C] batch, one void item per pixel."""
    item = np.dtype((np.void, images.shape[-1] * images.itemsize))
    return images.view(item)[..., 0]


def _flip_rotate_pad_crop(images: np.ndarray, flips: np.ndarray, angles: np.ndarray,
                          offsets: np.ndarray, pad: int) -> None:
    """Per image through PIL's rotation; the crop is two `take`s with cached index tables."""
    size = images.shape[1]
    if pad:
        rows = _crop_table(size, size, pad)
        cols = _crop_table(images.shape[2], images.shape[2], pad)
    for i in range(images.shape[0]):
        img = images[i, :, ::-1] if flips[i] else images[i]
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).rotate(
            float(angles[i]), resample=Image.Resampling.BILINEAR))
        if pad:
            oy, ox = offsets[i]
            img = img.take(rows[oy], axis=0).take(cols[ox], axis=1)
        images[i] = img


class ShuffledIndexBatches(grain.MapDataset):
    """Train index stream: element k is this process' record indices for global batch k.

    The global stream is epoch after epoch of a seeded permutation (one numpy permutation
    per epoch, reshuffled each epoch), cut into global batches of `batch_size * shard_count`;
    process `shard_index` takes rows [p * b, (p + 1) * b) of each. So the global batch at
    step s is the same whatever the process count (a 2-host run matches a 1-host run), and
    `next_index = s` means the same point in the data for any count. Whole batches of
    indices in one vectorised step: grain's per-element shuffle -> repeat -> batch cost
    ~11 us per image on this project's host, ~9 % of the single-worker pipeline.
    """

    def __init__(self, num_records: int, batch_size: int, seed: int,
                 num_epochs: int | None = None, shard_index: int = 0, shard_count: int = 1,
                 drop_remainder: bool = True):
        super().__init__()
        self._n, self._b, self._seed = int(num_records), int(batch_size), int(seed)
        self._index, self._count = int(shard_index), int(shard_count)
        self._stream = None if num_epochs is None else self._n * int(num_epochs)
        if self._stream is None:
            self._len = sys.maxsize // (self._b * self._count)
        elif drop_remainder:  # whole global batches only
            self._len = self._stream // (self._b * self._count)
        else:  # blocks of b positions, dealt round-robin; the last one may be short
            blocks = -(-self._stream // self._b)
            self._len = max(0, -(-(blocks - self._index) // self._count))
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self._len

    def permutation(self, epoch: int) -> np.ndarray:
        """Record order of `epoch` (a pure function of seed and epoch; the last two kept)."""
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self._seed, epoch]).permutation(self._n)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = perm
        return perm

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        if not 0 <= index < self._len:
            raise IndexError(f"batch {index} out of range [0, {self._len})")
        positions = (index * self._count + self._index) * self._b + np.arange(self._b)
        if self._stream is not None:
            positions = positions[positions < self._stream]
        epochs, offsets = np.divmod(positions, self._n)
        out = np.empty(len(positions), np.int64)
        for epoch in np.unique(epochs):
            at = epochs == epoch
            out[at] = self.permutation(int(epoch))[offsets[at]]
        return out

    def __str__(self) -> str:
        return (f"ShuffledIndexBatches(records={self._n}, batch={self._b}, seed={self._seed}, "
                f"process={self._index}/{self._count})")


def read_records(source: Any, indices: Sequence[int]) -> list:
    """Records at `indices`, in one batched read where the source has one (`__getitems__`)."""
    keys = [int(i) for i in indices]
    getitems = getattr(source, "__getitems__", None)
    if getitems is not None:
        return list(getitems(keys))
    return [source[k] for k in keys]


def read_columns(source: Any, indices: Sequence[int], keys: Sequence[str]) -> dict[str, list]:
    """`keys` of the records at `indices` as one list per key: through the source's own
    column read (`NormalizedSource.read_columns`) where it has one, else from `read_records`."""
    read = getattr(source, "read_columns", None)
    if read is not None:
        return read(indices, keys)
    records = read_records(source, indices)
    return {key: [r[key] for r in records] for key in keys}


def decode_batch(jpegs: Sequence[bytes], size: int) -> np.ndarray:
    """Encoded images -> one uint8 [N, size, size, 3] array (decoded straight into it)."""
    out = np.empty((len(jpegs), size, size, 3), np.uint8)
    for i, data in enumerate(jpegs):
        out[i] = decode_image(data, size)
    return out


class LoadBatch:
    """(batch index, source indices) -> the batch dict: read, decode, resize, augment.

    Picklable (grain sends it to its workers). Train batches know which global stream
    positions they hold (process `shard_index` of `shard_count` holds rows
    [p * b, (p + 1) * b) of every global batch), which seeds their augmentation.
    """

    def __init__(self, source: Any, *, image_size: int, train: bool, augment: Mapping | None,
                 with_metadata: bool, seed: int, batch_size: int, shard_index: int,
                 shard_count: int, augment_on: str = "host", rows_only: bool = False,
                 view_targets: ViewTargets | None = None):
        self.source = source
        self.image_size = int(image_size)
        self.train = bool(train)
        self.augment = _validate_augment(augment)
        self.augmenting = self.train and (
            self.augment["flip"] or self.augment["rotate_deg"] > 0
            or self.augment["pad_crop"] > 0 or self.augment["noise_std"] > 0)
        self.on_device = self.train and augments_on_device(self.augment, augment_on)
        self.with_metadata = with_metadata
        self.rows_only = bool(rows_only)
        if self.rows_only and self.augmenting and not self.on_device:
            raise ValueError(
                "a split on the device (data.placement='device') is augmented inside the "
                f"step, which does flip and pad-crop only: got {self.augment} with "
                f"augment_on={augment_on!r}")
        # Train rows on the device need nothing read here; eval rows still bring their
        # labels (the host scores the predictions).
        self.keys = ([] if self.rows_only else ["image"]) + (
            [] if self.rows_only and self.train else list(LABEL_DTYPES)
        ) + (["file_name"] if with_metadata else [])
        # A `data.decoded_cache.DecodedSource` serves decoded images; any other source, JPEGs.
        self.predecoded = getattr(source, "decoded_size", None)
        if self.predecoded is not None and self.predecoded != self.image_size:
            raise ValueError(f"{source!r} holds images decoded at {self.predecoded} px, but "
                             f"the pipeline was asked for image_size={self.image_size}")
        self.view_targets = view_targets if self.train else None
        if self.view_targets is not None:  # the views are the augmentation
            aug = self.augment
            self.augmenting = True
            self.on_device = augment_on != "host" and not (aug["rotate_deg"] or aug["noise_std"])
            if not self.on_device:
                raise ValueError(
                    "view targets (distillation) need flip and pad-crop in the step: no "
                    f"rotation or noise and augment_on not 'host'; got {self.augment} with "
                    f"augment_on={augment_on!r}")
            if len(self.view_targets.targets) != len(source):
                raise ValueError(f"view targets for {len(self.view_targets.targets)} records, "
                                 f"but the source holds {len(source)}")
        self.seed = int(seed)
        self.batch_size, self.shard_index, self.shard_count = batch_size, shard_index, shard_count

    def __call__(self, batch_index: int, indices: np.ndarray) -> dict:
        columns = read_columns(self.source, indices, self.keys) if self.keys else {}
        if self.rows_only:
            batch = {ROWS: np.asarray(indices, np.int32)}
        else:
            images = columns["image"]
            if self.predecoded is None:
                images = decode_batch(images, self.image_size)
            batch = {"image": images}
        for key, dtype in LABEL_DTYPES.items():
            if key in columns:
                batch[key] = np.asarray(columns[key], dtype)
        if self.with_metadata:
            batch["file_name"] = np.asarray([str(name) for name in columns["file_name"]])
        if self.augmenting:
            first = (batch_index * self.shard_count + self.shard_index) * self.batch_size
            draws = augment_draws(self.seed, first + np.arange(len(indices)))
            if self.view_targets is not None:
                batch[FLIP_CROP], batch[TEACHER] = self.view_targets.draw(draws, indices)
            elif self.on_device:
                batch[FLIP_CROP] = flip_crop_params(draws, self.augment)
            else:
                augment_batch(batch["image"], draws, self.augment)
        return batch


def read_ahead_batches(read_threads: int) -> int:
    """Batches the in-process pipeline prepares ahead with `read_threads` threads."""
    return 2 * max(int(read_threads), 1)


def make_dataset(
    source,
    *,
    image_size: int,
    batch_size: int,
    train: bool,
    seed: int,
    augment: Mapping | None = None,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    worker_count: int = 0,
    drop_remainder: bool | None = None,
    with_metadata: bool = False,
    read_threads: int = 2,
    worker_buffer_size: int = 2,
    augment_on: str = "host",
    rows_only: bool = False,
    view_targets: ViewTargets | None = None,
) -> grain.IterDataset:
    """Builds the grain pipeline over a random-access ``source`` of record dicts.

    Args:
      source: ``__len__`` + ``__getitem__`` (and optionally ``__getitems__`` for batched
        reads) returning {image: bytes, age, gender, race, file_name, ...} (``load_split``
        / ``folder_source``).
      image_size: output side in pixels.
      batch_size: per-process batch size.
      train: shuffle (reshuffled each epoch), augment, repeat; else one ordered pass.
      seed: shuffle and augmentation seed.
      augment: keys from ``AUGMENT_KEYS`` (train only); None = no augmentation.
      num_epochs: train: None = forever; eval: None = 1.
      shard_index, shard_count: this process' shard. Train: its rows of every global
        batch (``ShuffledIndexBatches``); eval: ``ds[shard_index::shard_count]``.
      worker_count: >0 uses grain ``mp_prefetch`` with that many processes (whole batches).
      drop_remainder: default ``train``.
      with_metadata: add ``file_name`` (numpy str array) to each batch.
      read_threads: grain threads per process preparing upcoming batches.
      worker_buffer_size: batches each worker prepares ahead.
      augment_on: where flip and pad-crop run (``AUGMENT_ON``); on the device, train
        batches carry ``FLIP_CROP`` [B, 3] int32 and the images come unaugmented.
      rows_only: batches carry ``ROWS`` (int32 record indices) instead of images (and, in
        training, instead of labels too): the split is on the device already. The index
        stream, augmentation draws and iterator state are those of the full pipeline.
      view_targets: train batches draw each record's flip and crop from these views and
        carry that view's targets (``TEACHER`` [B, K] float32).

    Returns:
      A ``grain.IterDataset``; ``iter(ds)`` yields dicts {image uint8 [B,H,W,3], age
      float32 [B], gender int32 [B], race int32 [B] (, file_name str [B], flip_crop)} and supports
      ``get_state()`` / ``set_state()`` (``next_index`` = batches yielded, without workers).
    """
    if image_size < 1 or batch_size < 1:
        raise ValueError(f"image_size and batch_size must be >= 1: {image_size}, {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}/{shard_count}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}")
    if drop_remainder is None:
        drop_remainder = train
    if len(source) == 0:
        raise ValueError("empty data source")
    load = LoadBatch(source, image_size=image_size, train=train, augment=augment,
                     with_metadata=with_metadata, seed=seed, batch_size=batch_size,
                     shard_index=shard_index, shard_count=shard_count, augment_on=augment_on,
                     rows_only=rows_only, view_targets=view_targets)
    if train:
        ds = ShuffledIndexBatches(len(source), batch_size, seed, num_epochs, shard_index,
                                  shard_count, drop_remainder)
    else:
        ds = grain.MapDataset.range(len(source))
        if shard_count > 1:
            ds = ds[shard_index::shard_count]
        if num_epochs not in (None, 1):
            ds = ds.repeat(num_epochs)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=np.asarray)
    ds = ds.map_with_index(load)
    it = ds.to_iter_dataset(grain.ReadOptions(
        num_threads=max(int(read_threads), 1),
        prefetch_buffer_size=read_ahead_batches(read_threads),
    ))
    if worker_count > 0:
        # grain reads absl flags in its workers; outside an absl app they are unparsed.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        )
    return it
