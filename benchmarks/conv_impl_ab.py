"""One model's training step under several `model.conv_impl` values, side by side.

    python benchmarks/conv_impl_ab.py [--model resnet18] [--impls matmul,auto] [--windows 6]

Builds the CPU suite's step (same size, batch and options as `python -m agr_jax.benchmark`)
once per impl in one process, then alternates timed windows between them so both see the
same machine load; prints each impl's window times and median ms/step.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

from agr_jax import host_memory
from agr_jax.bench import suite
from agr_jax.bench.alternate import alternate, print_medians
from agr_jax.bench.step import StepBench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="a step key of the CPU suite")
    parser.add_argument("--impls", default="matmul,auto")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4, help="steps per window")
    args = parser.parse_args()
    spec = {s.key: s for s in suite.get_suite("cpu").models}[args.model]
    benches = {}
    for impl in args.impls.split(","):
        bench = StepBench(dataclasses.replace(spec, kwargs={**spec.kwargs, "conv_impl": impl}))
        bench.first_call()
        bench.time_window(1)
        benches[impl] = bench
    arms = {f"conv_impl={impl}": functools.partial(_ms_per_step, bench, args.steps)
            for impl, bench in benches.items()}
    print_medians(f"{args.model}, {spec.image_size} px, batch {spec.batch}: ms/step per window",
                  alternate(arms, args.windows), ".1f")


def _ms_per_step(bench: StepBench, steps: int) -> float:
    return bench.time_window(steps) / steps * 1e3


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as every agr_jax entry point (host_memory.py)
    main()
