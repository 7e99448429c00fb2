"""Reuse freed host memory, so XLA:CPU stops faulting its buffers in afresh on every step.

XLA:CPU allocates every executable's temporary and output buffers afresh on each run. Under
glibc's defaults the large ones are mmap-ed and unmapped again (or trimmed off the heap), so
each step touches new pages: the ResNet-18 step at 64 px, batch 128 took ~69,300 minor page
faults and 517-547 ms on this project's 2-core host. Two settings together stop it:

1. glibc never serves a chunk with mmap and never trims the heap (`mallopt` M_MMAP_MAX=0,
   M_TRIM_THRESHOLD=max), so a freed buffer stays in the heap for the next step;
2. XLA:CPU runs each single-device computation on the thread that dispatched it
   (`jax_cpu_enable_async_dispatch=False`). With async dispatch the buffers are allocated on
   a worker thread, from one of glibc's secondary arenas: those are mmap-ed heaps of at most
   64 MB that hand bigger chunks to mmap whatever M_MMAP_MAX says.

Together: 0 faults per step and 377-439 ms (docs/throughput.md, 2026-12-02). Either alone
leaves the faults. The costs: the process keeps its peak heap (as caching allocators do), and
the Python thread waits for each CPU computation instead of queueing the next one (the
training loop's input work runs on grain's threads meanwhile; GPU/TPU dispatch is unchanged).
An earlier variant (one malloc arena for every thread) stopped the faults too, but serialised
every thread's allocations.

The entry points (train, evaluate, predict-style CLIs, each benchmark section) call
`reuse_freed_memory()` before JAX starts; importing the library changes nothing.
`AGR_JAX_HOST_MALLOC=default` keeps glibc's and JAX's behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "AGR_JAX_HOST_MALLOC"
CHOICES = ("reuse", "default")
# mallopt parameters (glibc <malloc.h>).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
MALLOC_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))

state = "not applied"


def setting() -> str:
    """`AGR_JAX_HOST_MALLOC` (default "reuse"), checked."""
    value = os.environ.get(ENV, "reuse")
    if value not in CHOICES:
        raise ValueError(f"{ENV}: expected one of {CHOICES}, got {value!r}")
    return value


def apply_malloc_settings() -> str:
    """`MALLOC_SETTINGS` in this process; "applied", or why not. Safe at any time (they are
    process-wide parameters, not a per-thread arena choice)."""
    if not sys.platform.startswith("linux"):
        return f"off (not glibc: {sys.platform})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- raises AttributeError on musl
    except (OSError, AttributeError) as error:
        return f"off (no glibc: {error})"
    failed = [p for p, v in MALLOC_SETTINGS if libc.mallopt(p, v) != 1]
    return "applied" if not failed else f"mallopt refused parameters {failed}"


def reuse_freed_memory() -> str:
    """Both settings (module docstring) unless `AGR_JAX_HOST_MALLOC=default`; returns the state.

    Must run before JAX creates its CPU client (the dispatch mode is read then).
    """
    global state
    if state == "applied":
        return state
    if setting() == "default":
        state = f"off ({ENV}=default)"
    else:
        import jax
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            raise RuntimeError("host_memory.reuse_freed_memory: JAX's backends are already "
                               "initialised; call it before anything touches jax.devices()")
        state = apply_malloc_settings()
        if state == "applied":  # the dispatch change alone would not stop the faults
            jax.config.update("jax_cpu_enable_async_dispatch", False)
    log.debug("host memory: %s", state)
    return state
