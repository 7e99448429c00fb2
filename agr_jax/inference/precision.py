"""The dtype a model computes in at inference: a release names one, the host may veto it.

bfloat16 compute (float32 weights, bfloat16 activations and convolutions) runs both
releases' forward ~1.5x faster on a CPU with AVX512-BF16 (the project's 2-core Zen 4; end to
end 1.33x fast, 1.44x default: docs/predict.md), and is what GPUs and TPUs serve in. A CPU
without native bfloat16 emulates it, slower than float32, so there a release that asks for
bfloat16 runs in float32 instead and says so: its outputs then differ from the release's
measured ones by rounding (mean age difference 0.07 years on the fast release).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

DTYPES = ("float32", "bfloat16")
CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")

log = logging.getLogger(__name__)


def check(dtype: str, what: str = "compute_dtype") -> str:
    if dtype not in DTYPES:
        raise ValueError(f"{what}: expected one of {DTYPES}, got {dtype!r}")
    return dtype


def cpu_flags(cpuinfo: str) -> set[str]:
    return {flag for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "flags"
            for flag in line.split(":", 1)[1].split()}


@functools.lru_cache(maxsize=1)
def _this_cpu_info() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read, so no native bfloat16 is assumed
        return ""


def native_bfloat16(platform: str, cpuinfo: str | None = None) -> bool:
    """Whether `platform` ("cpu", "gpu", "tpu", ...) computes bfloat16 natively."""
    if platform in ACCELERATORS:
        return True
    if platform != "cpu":
        return False
    flags = cpu_flags(_this_cpu_info() if cpuinfo is None else cpuinfo)
    return any(f in flags for f in CPU_BFLOAT16_FLAGS)


def choose(wanted: str, platform: str, cpuinfo: str | None = None) -> str:
    """`wanted` (the release's compute dtype), or float32 where bfloat16 is not native."""
    check(wanted)
    if wanted == "bfloat16" and not native_bfloat16(platform, cpuinfo):
        log.info("the release computes in bfloat16; this %s has no native bfloat16 (%s), so "
                 "it runs in float32 (outputs differ from the release's by rounding)",
                 platform, " / ".join(CPU_BFLOAT16_FLAGS))
        return "float32"
    return wanted
