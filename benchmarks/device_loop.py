"""loop_efficiency.device alone: the device-path loop over its own pure call, per K.

    python benchmarks/device_loop.py [--suite cpu] [--steps_per_call 1 4] [--windows N]

The suite's device-loop models (cpu: configs/utkface_cpu.py's model at 80 px, batch 128;
accelerator: ResNet-18 and RoR in bfloat16) on the real crops (../shared/utkface, else the
synthetic set), in this process; prints one JSON line per model and K. The same section
runs inside `python -m agr_jax.benchmark` (keys `loop_device`, `loop_efficiency.device`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agr_jax.bench import pipeline as pipeline_bench
from agr_jax.bench import sections, suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="cpu", choices=sorted(suite.SUITES))
    parser.add_argument("--steps_per_call", type=int, nargs="+", default=None,
                        help="default: the suite's")
    parser.add_argument("--windows", type=int, default=None, help="default: the suite's")
    parser.add_argument("--work_dir", default="runs/benchmark")
    args = parser.parse_args()
    chosen = suite.get_suite(args.suite)
    if args.windows:
        chosen.loop_windows = args.windows
    data_dir = pipeline_bench.default_data_dir(Path.cwd())
    for spec in chosen.device_loop_models:
        for k in args.steps_per_call or chosen.steps_per_call:
            out = sections.device_loop(spec, data_dir, Path(args.work_dir), chosen, k)
            out.pop("window_ratios")
            print(json.dumps({"key": f"{spec.key}_k{k}", **out}), flush=True)


if __name__ == "__main__":
    main()
