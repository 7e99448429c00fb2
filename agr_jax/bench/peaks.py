"""Device peaks: a measured matmul peak (same device, same dtype) and a table of bf16 peaks."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

# Dense bfloat16 peak TFLOP/s per device (vendor figures, without sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,  # SXM; PCIe parts are ~756
    "A100": 312.0,
    "TPU v5p": 459.0,
    "TPU v5e": 197.0,
    "TPU v4": 275.0,
}
# device_kind spellings seen in the wild -> table key (checked in order).
_KIND_ALIASES = (
    ("h200", "H200"),
    ("h100", "H100"),
    ("a100", "A100"),
    ("v5p", "TPU v5p"),
    ("v5 lite", "TPU v5e"),
    ("v5e", "TPU v5e"),
    ("v5litepod", "TPU v5e"),
    ("tpu v4", "TPU v4"),
)


def device_peak_tflops(device_kind: str) -> tuple[str, float] | None:
    """(table key, bf16 peak TFLOP/s) for a `jax.Device.device_kind`, or None if unknown."""
    kind = device_kind.lower()
    for needle, key in _KIND_ALIASES:
        if needle in kind:
            return key, BF16_PEAK_TFLOPS[key]
    return None


def measured_matmul_tflops(dtype: str = "float32", n: int = 2048, seconds: float = 1.0) -> float:
    """TFLOP/s of a large square `jnp.dot` on the default device: the achievable peak."""
    # Random operands: constant ones or zeros can run faster than real data on GPUs.
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32).astype(dtype)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:  # best of several single products: the peak, least disturbed by other load
        start = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2 * n**3 / best / 1e12


# Dense float32 matmul peaks where float32 matmuls run on tensor cores (XLA's default
# precision on NVIDIA Ampere and later is TF32; on TPU, bfloat16 passes: the bf16 peak).
TF32_PEAK_TFLOPS = {"H200": 494.7, "H100": 494.7, "A100": 156.0}


def device_peak_for_dtype(device_kind: str, dtype: str) -> tuple[str, float] | None:
    """(description, peak TFLOP/s) of the device for matmuls in `dtype`, or None if unknown:
    MFU is achieved FLOP/s over the peak of the arithmetic the step actually uses."""
    found = device_peak_tflops(device_kind)
    if found is None:
        return None
    key, bf16 = found
    if dtype == "bfloat16" or key.startswith("TPU"):
        return f"{key} bf16", bf16
    if key in TF32_PEAK_TFLOPS:
        return f"{key} tf32", TF32_PEAK_TFLOPS[key]
    return None
