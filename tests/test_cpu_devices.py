"""`cpu_devices`: a CPU host split into XLA devices trains (and benchmarks) data-parallel."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agr_jax.train import parallel

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    from agr_jax.train.parallel import use_cpu_devices
    use_cpu_devices(2)
    import jax
    from agr_jax.bench import loop
    from agr_jax.bench.step import ModelSpec, StepBench, measure
    from agr_jax.data import synthetic, prepare, tfds_builders
    bench = StepBench(ModelSpec("ror", 16, 8, "float32",
                                {"width": 4, "stage_sizes": (1, 1), "head_hidden": (16,)}))
    row = measure(bench, steps=2, windows=1, peak_tflops=1.0)
    shardings = {str(x.sharding.device_set) for x in jax.tree.leaves(bench.state.params)}
    work = sys.argv[1]
    synthetic.generate(work + "/faces", 40, seed=0, size=32)
    prepare.prepare(work + "/faces", work + "/tfds", seed=0)
    source = tfds_builders.load_split(work + "/tfds", "train")
    eff = loop.run(bench, source, steps=2, windows=1, workers=0)
    print(json.dumps({"devices": jax.device_count(), "row_devices": row["devices"],
                      "img_s": row["img_s"], "param_device_sets": len(shardings),
                      "traces": bench.traces, "loop_img_s": eff["loop_img_s"]}))
""")


def test_two_cpu_devices_run_the_data_parallel_step_and_loop(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2 and result["row_devices"] == 2
    assert result["param_device_sets"] == 1  # replicated over the mesh
    assert result["traces"] == 1 and result["img_s"] > 0 and result["loop_img_s"] > 0


def test_bad_or_late_cpu_device_counts_name_the_key():
    with pytest.raises(ValueError, match="config.cpu_devices"):
        parallel.use_cpu_devices(-1)
    import jax

    jax.devices()  # backends are up in this process: too late to split the CPU
    with pytest.raises(ValueError, match="config.cpu_devices=3"):
        parallel.use_cpu_devices(3)
    parallel.use_cpu_devices(0)  # JAX's default: nothing to change, never an error
