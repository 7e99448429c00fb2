"""Keep freed host memory in the process (glibc malloc settings), so XLA:CPU stops faulting.

XLA:CPU allocates every executable's temporary and output buffers afresh on each run.
Under glibc's defaults the large ones are mmap-ed and unmapped again (or trimmed off the
heap), so each training step touches new pages: a ResNet-18 step at 64 px, batch 128 took
~69,000 minor page faults, ~0.17 s of kernel time per ~0.5 s step on this project's 2-core
host. With one malloc arena, no mmap-ed chunks and no trimming, freed buffers are reused
and the faults stop (0 per step; the step 5-15 % faster, README "Throughput"); the cost is
that the process keeps its peak heap, as caching allocators (tcmalloc) do.

Opt-in (`AGR_JAX_HOST_MALLOC=retain` in the environment), applied when `agr_jax` is imported,
before JAX starts its threads (a thread's arena is chosen at its first allocation). Not the
default because one arena serialises every thread's allocations: measured in the benchmark
suite's process, PyTorch's eager steps (many small allocations from its OpenMP threads) ran
up to 2x slower with it (the benchmark's PyTorch twin now runs in a process of its own), and
the in-process input pipeline threads share that one arena (one suite run each way on
2026-12-02: no loss outside the noise, not enough to make it the default; README "Throughput").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "AGR_JAX_HOST_MALLOC"
# mallopt parameters (glibc <malloc.h>).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))

state = "not applied"


def retain_freed_memory() -> str:
    """Applies `SETTINGS` once; returns what was done ("applied", or why not)."""
    global state
    if state == "applied":
        return state
    if os.environ.get(ENV, "default") != "retain":
        state = f"off ({ENV} is not 'retain')"
    elif not sys.platform.startswith("linux"):
        state = f"off (not glibc: {sys.platform})"
    else:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.gnu_get_libc_version  # noqa: B018 -- raises AttributeError on musl
        except (OSError, AttributeError) as error:
            state = f"off (no glibc: {error})"
        else:
            failed = [p for p, v in SETTINGS if libc.mallopt(p, v) != 1]
            state = "applied" if not failed else f"mallopt refused parameters {failed}"
    log.debug("host malloc: %s", state)
    return state
