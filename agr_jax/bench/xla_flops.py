"""XLA's own FLOP count of the compiled train step, beside the analytic count.

Throughput and MFU use the analytic count (`models/flops.py`: 2 x MACs of every conv and
matmul, training = 3 x forward), because `cost_analysis()` is best-effort
(docs/accelerators.md: wrong or missing on GPU for convolutions; custom calls such as the
oneDNN FFI convolutions are invisible to it). This puts XLA's figure next to it and says
how far apart they are.

Where they differ, the usual reasons (tests/test_xla_flops.py checks the first):
- XLA's HloCostAnalysis counts only the kernel taps that land inside the input; the analytic
  count counts every tap, padding included (what the convolution kernels execute). On small
  late-stage maps (3x3 at 80 px) a 3x3 kernel has 4-9 valid taps of 9.
- The step has no gradient for the input image: the stem's input-gradient convolution that
  3 x forward assumes is not computed.
- XLA also counts element-wise work (BatchNorm, activations, the optimiser update).
- oneDNN FFI convolutions (CPU, `model.conv_impl`) count 0 in XLA's figure.
"""

from __future__ import annotations

from typing import Any

AGREEMENT = 0.05  # the tolerance


def compiled_flops(jitted: Any, *args: Any) -> float | None:
    """`cost_analysis()['flops']` of `jitted` compiled for `args` (the executable the jit
    cache already holds: no second compile), or None where the backend gives none."""
    try:
        analysis = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - best-effort by design; absent on some backends
        return None
    if isinstance(analysis, list):  # older JAX: one dict per device program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def cross_check(xla_flops_per_call: float | None, analytic_per_img: float,
                images_per_device_per_call: int) -> dict[str, Any]:
    """Both counts per image and their ratio. The compiled SPMD program is one device's, so
    XLA's figure covers that device's images of the call."""
    if xla_flops_per_call is None:
        return {"xla_flops_per_img": None, "xla_vs_analytic": None,
                "flops_agree": None, "flops_note": "cost_analysis gave no flops"}
    per_img = xla_flops_per_call / images_per_device_per_call
    ratio = per_img / analytic_per_img
    agree = abs(ratio - 1) <= AGREEMENT
    return {
        "xla_flops_per_img": per_img,
        "xla_vs_analytic": ratio,
        "flops_agree": agree,
        "flops_note": "within 5 %" if agree else (
            "XLA counts fewer (taps on padding skipped, no stem input-gradient, custom-call "
            "convolutions invisible): the analytic count is used" if ratio < 1 else
            "XLA counts more (element-wise and optimiser work): the analytic count is used"),
    }
