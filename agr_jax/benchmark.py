"""Throughput benchmarks: `python -m agr_jax.benchmark [--suite cpu|accelerator] [--json PATH]
[--sections loop,predict,...] [--predict_workdir W]`.

Run from the repository root (the PyTorch reference lives in benchmarks/, outside the package).
"""

import json
from pathlib import Path

from absl import app, flags, logging

from agr_jax import host_memory
from agr_jax.bench import pipeline, suite
from agr_jax.cli import setup_logging
from agr_jax.train.parallel import use_cpu_devices

_SUITE = flags.DEFINE_enum("suite", "cpu", sorted(suite.SUITES), "Which benchmark suite.")
_JSON = flags.DEFINE_string("json", None, "Write the report as JSON to this path.")
_MODELS = flags.DEFINE_list("models", None, "Only these models of the suite (default: all).")
_SECTIONS = flags.DEFINE_list(
    "sections", None, f"Only these sections (default: all): {', '.join(suite.SECTIONS)}; "
    "`step` is every model's step and vs_pytorch, the loops and inference run on the first "
    "model. E.g. --sections loop: only the loop the loop_efficiency target is judged on.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "UTKFace folder for the pipeline sections (default: <repo>/../shared/"
    "utkface; a synthetic set is generated when it is missing).")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/benchmark", "Cache for prepared data.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "Split the CPU into this many XLA devices and time the data-parallel "
    "step over them, as training with config.cpu_devices does (0: one device).")
_REPEATS = flags.DEFINE_integer(
    "repeats", None, "Fresh processes for each section the targets are judged on (the "
    "suite's repeat_sections: vs_pytorch models' steps, the default loop); their paired "
    "rounds are pooled. Default: the suite's (cpu 3, accelerator 1); 1 for a quicker run.")
_ISOLATE = flags.DEFINE_bool(
    "isolate", True, "Run each section (each model's step and vs_pytorch, the pipeline, each "
    "loop, inference) in a fresh process, as a training run is; --noisolate runs them all in "
    "this one (debugging; measuring what sharing a process costs).")
_PREDICT_WORKDIR = flags.DEFINE_string(
    "predict_workdir", None, "The `predict` section's model: this run's checkpoint "
    "(default: the released model, agr_jax/released); `predict_fast` always times "
    "agr_jax/released_fast.")


def main(argv):
    del argv
    if not _ISOLATE.value:  # else each section's process applies it (bench/isolate.py)
        host_memory.reuse_freed_memory()
    use_cpu_devices(_CPU_DEVICES.value)
    setup_logging(logging.INFO)
    repo_root = Path(__file__).resolve().parents[1]
    data_dir = Path(_DATA_DIR.value) if _DATA_DIR.value else pipeline.default_data_dir(repo_root)
    chosen = suite.get_suite(_SUITE.value, _MODELS.value, _REPEATS.value, _SECTIONS.value)
    report = suite.run_suite(chosen, data_dir, Path(_WORK_DIR.value), isolate=_ISOLATE.value,
                             cpu_devices=_CPU_DEVICES.value,
                             predict_workdir=_PREDICT_WORKDIR.value)
    print(suite.format_report(report))
    if _JSON.value:
        Path(_JSON.value).parent.mkdir(parents=True, exist_ok=True)
        Path(_JSON.value).write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
