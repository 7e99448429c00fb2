"""Per-layer convolution timings: XLA's `lax.conv_general_dilated`, the matmul routing, oneDNN
through the FFI, and PyTorch's conv2d (channels-last) when torch is installed.

    python benchmarks/conv_layers.py [--batch 128] [--repeats 5] [--no_stem_pool]

The layers are those of the benchmark's ResNet-18 (width 0.75) at 64 px; `--no_stem_pool`
gives that net's layers without the stem max-pool (stage 1 at 32x32: the PyTorch
reference's layout in docs/results.md, `model.stem_pool=False`). For each: forward,
forward + weight gradient (what the stem needs), forward + both gradients; milliseconds,
median of `--repeats` calls after compilation (PyTorch: after two warm-up calls, padding
k // 2, which gives the same output sizes). The numbers behind `models/conv.py`'s routing.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from agr_jax import host_memory
from agr_jax.models import conv, onednn_conv

# (H=W of the input, Cin, Cout, kernel, stride)
LAYERS = [
    (64, 3, 48, 7, 2),
    (16, 48, 48, 3, 1),
    (16, 48, 96, 3, 2),
    (8, 96, 96, 3, 1),
    (8, 96, 192, 3, 2),
    (4, 192, 192, 3, 1),
    (4, 192, 384, 3, 2),
    (2, 384, 384, 3, 1),
    (16, 48, 96, 1, 2),
]


# The same net without the stem max-pool: every stage at twice the side.
LAYERS_NO_STEM_POOL = [LAYERS[0]] + [(2 * size, cin, cout, k, stride)
                                     for size, cin, cout, k, stride in LAYERS[1:]]

COL = 14


def _ms(fn, *args, repeats: int) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _torch_row(size: int, cin: int, cout: int, k: int, stride: int, batch: int,
               repeats: int) -> list[float]:
    """PyTorch's forward / + weight gradient / + both gradients for one layer."""
    import torch  # optional: only this column needs it

    torch.set_num_threads(os.cpu_count() or 1)
    x = torch.randn(batch, cin, size, size).contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, k, k) * 0.1
    row = []
    for x_grad, w_grad in ((False, False), (False, True), (True, True)):
        xs, ws = x.clone().requires_grad_(x_grad), w.clone().requires_grad_(w_grad)

        def step(xs=xs, ws=ws, grads=w_grad):
            with torch.set_grad_enabled(grads):
                y = torch.nn.functional.conv2d(xs, ws, stride=stride, padding=k // 2)
                if grads:
                    (y * y).sum().backward()

        for _ in range(2):
            step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        row.append(statistics.median(times) * 1e3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no_stem_pool", action="store_true",
                        help="layers of the net without the stem max-pool (stage 1 at 32x32)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    impls = {"xla": lax.conv_general_dilated,
             "matmul": functools.partial(conv.cpu_conv_general_dilated, onednn=False)}
    if onednn_conv.available():
        impls["onednn"] = functools.partial(conv.cpu_conv_general_dilated, onednn=True)
    else:
        print(f"oneDNN column skipped: {onednn_conv.status()}")
    names = list(impls)
    if importlib.util.find_spec("torch") is not None:
        names.append("torch")
    else:
        print("PyTorch column skipped: torch is not installed (pip install -e .[bench])")
    kinds = ("fwd", "+dW", "+dX+dW")
    print(f"device {jax.devices()[0].device_kind}, batch {args.batch}, float32, ms "
          f"(per kind: {' / '.join(names)})")
    header = "".join(f"{kind + ' ' + name:>{COL}}" for kind in kinds for name in names)
    print(f"{'layer':<26}{header}")
    totals = np.zeros(len(kinds) * len(names))
    for size, cin, cout, k, stride in LAYERS_NO_STEM_POOL if args.no_stem_pool else LAYERS:
        x = jnp.asarray(rng.normal(size=(args.batch, size, size, cin)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.1, jnp.float32)
        pads = tuple(lax.padtype_to_pads((size, size), (k, k), (stride, stride), "SAME"))
        row = []
        for impl in impls.values():
            def fwd(a, b, impl=impl, stride=stride, pads=pads):
                return impl(a, b, (stride, stride), pads, dimension_numbers=conv.NHWC)

            def weight_grad(a, b, fwd=fwd):
                return jax.grad(lambda b_: jnp.sum(fwd(a, b_) ** 2))(b)

            def both_grads(a, b, fwd=fwd):
                return jax.grad(lambda a_, b_: jnp.sum(fwd(a_, b_) ** 2), argnums=(0, 1))(a, b)

            row.append([_ms(f, x, w, repeats=args.repeats)
                        for f in (fwd, weight_grad, both_grads)])
        if "torch" in names:
            row.append(_torch_row(size, cin, cout, k, stride, args.batch, args.repeats))
        cells = [row[impl][kind] for kind in range(len(kinds)) for impl in range(len(names))]
        totals += cells
        name = f"{size}x{size}x{cin}->{cout} k{k}/{stride}"
        print(f"{name:<26}" + "".join(f"{v:>{COL}.1f}" for v in cells))
    print(f"{'sum':<26}" + "".join(f"{v:>{COL}.1f}" for v in totals))


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as every agr_jax entry point (host_memory.py)
    main()
