"""loop_efficiency under two or more loop settings side by side, alternating windows.

    python benchmarks/loop_ab.py --compare nice [--nice 0,19] [--rounds 10] [--steps 24]
    python benchmarks/loop_ab.py --compare cache [--rounds 6]     # from the repository root

The CPU suite's `ror` step (on its CPU split, 2 devices, flip + pad-crop in the step) and
loop settings on the real crops (../shared/utkface, else the synthetic set). Each round runs
one loop window (drain, timed loop, timed pure step) per arm, so every arm sees the same
machine load; prints each arm's median and every round's ratio.
`--compare nice`: the read threads at each nice value (`data.read_thread_nice`), through the
decoded cache. `--compare cache`: through the decoded cache against decoding every epoch, at
the default nice value.
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
from agr_jax.train import input as train_input
from agr_jax.train.parallel import use_cpu_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=("nice", "cache"), default="nice")
    parser.add_argument("--nice", default="0,19", help="read-thread nice values (--compare nice)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=24, help="timed steps per window")
    args = parser.parse_args()
    cpu = suite.get_suite("cpu")
    spec = {s.key: s for s in cpu.models}["ror"]
    use_cpu_devices(spec.cpu_devices)  # before JAX's backends start, as the suite's section
    bench = StepBench(spec, device_augment=pipeline_bench.AUGMENT)  # flip + crop in the step
    bench.first_call()
    bench.time_window(2)
    data = pipeline_bench.prepare_data(
        pipeline_bench.default_data_dir(Path.cwd()), Path("runs/benchmark"), cpu.synthetic_num)
    training = defaults.get_config().data
    cached = decoded_cache.maybe_cached(data.source, data.tfds_dir, "train", spec.image_size,
                                        float(training.decoded_cache_gb))

    def efficiency(source, nice: int) -> float:
        run = loop_bench.run(bench, source, args.steps, windows=1, workers=cpu.loop_workers,
                             thread_nice=nice)
        return run["loop_efficiency"]

    if args.compare == "nice":
        arms = {f"nice {n}": functools.partial(efficiency, cached, int(n))
                for n in args.nice.split(",")}
    else:
        nice = train_input.read_thread_nice(defaults.get_config())
        arms = {"decoded cache": functools.partial(efficiency, cached, nice),
                "decoding every epoch": functools.partial(efficiency, data.source, nice)}
    print_medians(f"{spec.key} on {spec.cpu_devices} CPU devices, batch {spec.batch}, "
                  f"{data.description}: loop_efficiency per round",
                  alternate(arms, args.rounds), ".3f")


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as every agr_jax entry point (host_memory.py)
    main()
