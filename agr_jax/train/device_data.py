"""The decoded split on the devices (`config.data.placement`): only row numbers cross per step.

On an accelerator the host's JPEG pipeline fed one H100 at 25.5k img/s against a 141k img/s
step (docs/accelerators.md). A decoded face split is small (UTKFace's training crops at 80 px:
285 MB), so with placement "device" it is copied to every device once, and each step
receives only its rows (`pipeline.ROWS`) and the flip/crop draws the host pipeline already
computes (`pipeline.FLIP_CROP`): gather, flip and pad-crop run inside the jitted step. The
index stream, draws and iterator state are those of the host pipeline, so the batches are
the same bits and resume is unchanged.

The copy is replicated, not sharded: every device's share of a shuffled batch may hold any
row, so every device (and every process, for its own devices) holds the whole split. A split
too large for that stays on the host ("auto" decides, `choose_placement`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from agr_jax.data import pipeline
from agr_jax.data.decoded_cache import DecodedSource

log = logging.getLogger(__name__)

PLACEMENTS = ("host", "device", "auto")
# "auto" puts the splits on the device only when together they take at most this share of
# one device's memory: the rest is left to parameters, optimizer state and activations.
DEVICE_MEMORY_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the splits live, and the reason (logged)."""

    on_device: bool
    reason: str


def device_memory_bytes(device: Any) -> int | None:
    """Memory one device can allocate (None where the backend does not say, as on CPU)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def choose_placement(config: ml_collections.ConfigDict, sources: list[Any],
                     parallel_mode: str, backend: str | None = None,
                     memory: int | None = -1) -> Placement:
    """`data.placement` resolved for these `sources` (train, validation). "device" fails with
    the reason where it cannot work; "auto" falls back to the host with the reason.
    `backend`/`memory`: the default backend and its per-device memory (tests override)."""
    requested = str(config.data.get("placement", "host"))
    if requested not in PLACEMENTS:
        raise ValueError(f"config.data.placement: expected one of {PLACEMENTS}, "
                         f"got {requested!r}")
    if requested == "host":
        return Placement(False, "data.placement='host'")
    backend = backend or jax.default_backend()
    memory = device_memory_bytes(jax.local_devices()[0]) if memory == -1 else memory
    need = sum(split_bytes(s) for s in sources if isinstance(s, DecodedSource))
    blockers = _blockers(config, sources, parallel_mode)
    if requested == "device":
        if blockers:
            raise ValueError(f"config.data.placement='device': {'; '.join(blockers)}")
        return Placement(True, f"data.placement='device' ({need / 2**20:.0f} MB per device)")
    if backend == "cpu":
        blockers.append("the CPU backend (the host pipeline reads the same decoded rows; "
                        "set placement='device' to use the device path there)")
    if memory is None:
        blockers.append(f"{backend} reports no device memory size")
    elif need > DEVICE_MEMORY_SHARE * memory:
        blockers.append(f"{need / 2**20:.0f} MB > {DEVICE_MEMORY_SHARE:g} of the device's "
                        f"{memory / 2**30:.1f} GB")
    if blockers:
        return Placement(False, f"data.placement='auto' -> host: {'; '.join(blockers)}")
    return Placement(True, f"data.placement='auto' -> device: {need / 2**20:.0f} MB <= "
                           f"{DEVICE_MEMORY_SHARE:g} of {memory / 2**30:.1f} GB on {backend}")


def _blockers(config: ml_collections.ConfigDict, sources: list[Any],
              parallel_mode: str) -> list[str]:
    """What rules the device path out for this config, each as a reason."""
    out = []
    if not all(isinstance(s, DecodedSource) for s in sources):
        out.append("the splits are not all in the decoded cache (data.decoded_cache_gb)")
    augment, augment_on = dict(config.data.augment), str(config.data.get("augment_on", "auto"))
    try:
        moves = pipeline.augments_on_device(augment, augment_on)
    except ValueError:  # augment_on="device" with rotation or noise
        moves = False
    if _augments(augment) and not moves:
        out.append("the step augments by flip and pad-crop only (rotate_deg and noise_std "
                   "must be 0, augment_on not 'host')")
    if parallel_mode == "pmap":
        out.append("config.parallel='pmap' (use 'shard_map' or 'none')")
    return out


def _augments(augment: Mapping) -> bool:
    return bool(augment.get("flip")) or any(
        float(augment.get(k, 0)) > 0 for k in ("pad_crop", "rotate_deg", "noise_std"))


def split_bytes(source: DecodedSource) -> int:
    return int(source.images.nbytes) + sum(int(v.nbytes) for v in source.labels.values())


def split_arrays(source: DecodedSource) -> dict[str, np.ndarray]:
    """The decoded images and the labels of `source`, as the step reads them."""
    return {"image": np.asarray(source.images),
            **{k: np.asarray(source.labels[k], dtype)
               for k, dtype in pipeline.LABEL_DTYPES.items()}}


def put_split(source: DecodedSource, mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """The whole split on every device of `mesh` (each process fills its own devices)."""
    sharding = NamedSharding(mesh, P())
    arrays = split_arrays(source)
    if jax.process_count() == 1:
        return jax.device_put(arrays, sharding)
    return {k: jax.make_array_from_process_local_data(sharding, v, v.shape)
            for k, v in arrays.items()}


def gather_batch(split: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict:
    """A rows batch (`pipeline.ROWS`, maybe `FLIP_CROP` or labels) -> the batch the host
    pipeline would have sent: images gathered (then flipped and cropped by the step, as
    for `augment_on` "device"), labels gathered unless the batch brought its own."""
    rows = batch[pipeline.ROWS]
    out = {k: v for k, v in batch.items() if k != pipeline.ROWS}
    for key, values in split.items():
        if key not in out:
            out[key] = jnp.take(values, rows, axis=0)
    return out


def gathering(body: Callable) -> Callable:
    """`body(state, batch)` -> `(state, split, rows_batch)`, for train and eval steps."""

    def with_split(state: Any, split: Mapping[str, jax.Array], batch: Mapping[str, Any]):
        return body(state, gather_batch(split, batch))

    return with_split

