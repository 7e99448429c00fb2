"""One model's training step under several `model.conv_impl` values, side by side.

    python benchmarks/conv_impl_ab.py [--model resnet18] [--impls matmul,auto] [--windows 6]

Builds the CPU suite's step (same size, batch and options as `python -m agr_jax.benchmark`)
once per impl in one process, then alternates timed windows between them so both see the
same machine load; prints each impl's window times and median ms/step.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from agr_jax.bench import suite
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
    times: dict[str, list[float]] = {impl: [] for impl in benches}
    for _ in range(args.windows):
        for impl, bench in benches.items():
            times[impl].append(bench.time_window(args.steps) / args.steps * 1e3)
    print(f"{args.model}, {spec.image_size} px, batch {spec.batch}: ms/step per window")
    for impl, ms in times.items():
        print(f"  conv_impl={impl:<7} median {statistics.median(ms):7.1f}   "
              + " ".join(f"{t:.0f}" for t in ms))


if __name__ == "__main__":
    main()
