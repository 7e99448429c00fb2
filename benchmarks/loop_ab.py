"""loop_efficiency through the decoded cache and decoding every epoch, alternating windows.

    python benchmarks/loop_ab.py [--rounds 10] [--steps N]    # from the repository root

The CPU suite's `ror` step (on its CPU split, 2 devices, flip + pad-crop in the step) and
loop settings on the real crops (../shared/utkface, else the synthetic set); each round runs
one loop window (drain, timed loop, timed pure step) per source, so both see the same
machine load; prints each source's median and every round's ratio.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from agr_jax import defaults, host_memory
from agr_jax.bench import loop as loop_bench
from agr_jax.bench import pipeline as pipeline_bench
from agr_jax.bench import suite
from agr_jax.bench.alternate import alternate, print_medians
from agr_jax.bench.step import StepBench
from agr_jax.data import decoded_cache
from agr_jax.train.parallel import use_cpu_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    cpu = suite.get_suite("cpu")
    parser.add_argument("--steps", type=int, default=cpu.loop_steps,
                        help="timed steps per window (default: the cpu suite's)")
    args = parser.parse_args()
    spec = {s.key: s for s in cpu.models}["ror"]
    use_cpu_devices(spec.cpu_devices)  # before JAX's backends start, as the suite's section
    bench = StepBench(spec, device_augment=pipeline_bench.AUGMENT)  # flip + crop in the step
    bench.first_call()
    bench.time_window(2)
    data = pipeline_bench.prepare_data(
        pipeline_bench.default_data_dir(Path.cwd()), Path("runs/benchmark"), cpu.synthetic_num)
    training = defaults.get_config()
    cached = decoded_cache.maybe_cached(data.source, data.tfds_dir, "train", spec.image_size,
                                        float(training.data.decoded_cache_gb))

    def efficiency(source) -> float:
        run = loop_bench.run(bench, source, args.steps, windows=1, workers=cpu.loop_workers,
                             log_every=int(training.log_every_steps))
        return run["loop_efficiency"]

    arms = {"decoded cache": functools.partial(efficiency, cached),
            "decoding every epoch": functools.partial(efficiency, data.source)}
    print_medians(f"{spec.key} on {spec.cpu_devices} CPU devices, batch {spec.batch}, "
                  f"{data.description}: loop_efficiency per round",
                  alternate(arms, args.rounds), ".3f")


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as every agr_jax entry point (host_memory.py)
    main()
