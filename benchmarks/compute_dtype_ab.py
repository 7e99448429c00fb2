"""A release end to end in float32 and in bfloat16 compute, alternating, and how far apart.

    python benchmarks/compute_dtype_ab.py [--model fast|default] [--rounds 5]

The `predict` section's protocol (`agr_jax/bench/predict.py`: the cpu suite's 1,024 crops,
JPEG bytes -> records, 512 per call, one view) for each dtype in one process, one window of
each per round so both see the same machine load; then the forward alone, and the two
dtypes' records compared face by face (the labels on the benchmark sample include training
faces: read the agreement, not the level). The release's own accuracy per dtype comes
from `python -m agr_jax.release --compute_dtype ...` (its evaluation.json).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from agr_jax import host_memory
from agr_jax.bench import pipeline as pipeline_bench
from agr_jax.bench import predict as predict_bench
from agr_jax.bench import suite
from agr_jax.bench.alternate import alternate, paired_ratio, print_medians

DTYPES = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", choices=("fast", "default"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per window")
    args = parser.parse_args()

    from agr_jax.inference import images
    from agr_jax.inference.predictor import Predictor
    from agr_jax.inference.release import read_released

    cpu = suite.get_suite("cpu")
    data = pipeline_bench.prepare_data(pipeline_bench.default_data_dir(Path.cwd()),
                                       Path("runs/benchmark"), cpu.synthetic_num)
    jpegs = [data.source[i]["image"] for i in range(min(len(data.source), cpu.pipeline_sample))]
    bundle = read_released(args.model)
    predictors = {d: Predictor(bundle, compute_dtype=d) for d in DTYPES}
    records = {d: predict_bench.records_of(p, jpegs) for d, p in predictors.items()}
    crops = np.stack([images.crop(j, bundle.image_size).image for j in jpegs])
    print(f"release {args.model!r} ({bundle.model['name']}, {bundle.image_size} px, its "
          f"model.json: {bundle.compute_dtype}); {len(jpegs)} crops ({data.description})")
    e2e = alternate({d: functools.partial(predict_bench.crops_per_s, p, jpegs, args.seconds)
                     for d, p in predictors.items()}, args.rounds)
    print_medians("end to end, crops/s per window (JPEG bytes -> records, 1 view):", e2e, ",.0f")
    print(f"  bfloat16 / float32, paired: {paired_ratio(e2e['bfloat16'], e2e['float32']):.2f}x")
    forward = alternate({d: functools.partial(predict_bench.forward_crops_s, p, crops, args.seconds)
                         for d, p in predictors.items()}, args.rounds)
    print_medians("forward alone, crops/s per window (decoded crops, batches of 128):",
                  forward, ",.0f")
    print(f"  bfloat16 / float32, paired: "
          f"{paired_ratio(forward['bfloat16'], forward['float32']):.2f}x")
    a, b = records["float32"], records["bfloat16"]
    age = np.abs(np.array([r["age"] for r in a]) - np.array([r["age"] for r in b]))
    print(f"records, bfloat16 against float32 ({len(a)} faces): same gender "
          f"{np.mean([x['gender'] == y['gender'] for x, y in zip(a, b, strict=True)]):.4f}, "
          f"same race {np.mean([x['race'] == y['race'] for x, y in zip(a, b, strict=True)]):.4f}, "
          f"age difference mean {age.mean():.3f} / max {age.max():.2f} years")


if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as every agr_jax entry point (host_memory.py)
    main()
