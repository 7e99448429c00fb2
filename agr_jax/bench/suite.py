"""The benchmark suites: which models/sizes/batches, then every section into one JSON report.

Sections (keys of the report): `peak` (measured matmul TFLOP/s per dtype), `step.<model>`,
`pipeline`, `loop_efficiency` (+ `loop` details), `vs_pytorch.<model>`, `inference`,
`targets` (met or not) and `skipped` (why a section or model did not run).

`loop` runs the pipeline as training does by default (through the decoded cache,
`data.decoded_cache_gb`); `loop_decode_every_epoch` is the same loop decoding every JPEG
each time, for comparison.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import jax

from agr_jax import defaults, models
from agr_jax.bench import inference as inference_bench
from agr_jax.bench import loop as loop_bench
from agr_jax.bench import peaks
from agr_jax.bench import pipeline as pipeline_bench
from agr_jax.bench.step import ModelSpec, StepBench, measure
from agr_jax.data import decoded_cache

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Suite:
    """Settings of one benchmark run; `SUITES` holds the named ones."""

    models: list[ModelSpec]
    steps: int = 3  # steps per timed window
    windows: int = 3  # median over windows
    vs_pytorch: tuple[str, ...] = ()  # model names compared against benchmarks/torch_reference
    vs_pytorch_windows: int = 5  # alternating rounds (ours, PyTorch) per comparison
    pipeline_image_size: int = 64
    pipeline_batch: int = 128
    pipeline_workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    pipeline_sample: int = 1024
    pipeline_batches: int = 48
    loop_workers: int = 0  # as configs/quickstart.py (data.worker_count)
    loop_steps: int = 12  # timed steps per loop window (after the pipeline's buffers drain)
    inference_batch: int = 128
    synthetic_num: int = 2000  # images generated when no real data is found
    peak_matmul_size: int = 2048
    accelerator: bool = False


def _cpu_suite() -> Suite:
    ror = {"width": 16, "stage_sizes": (2, 2, 2, 2)}
    r18 = {"width": 0.75}  # 48 channels in the first stage: DESIGN.md's ResNet-18 reference
    return Suite(
        models=[
            ModelSpec("ror", 64, 64, "float32", ror),
            ModelSpec("ror", 64, 64, "bfloat16", ror),
            ModelSpec("resnet18", 64, 128, "float32", r18),
            ModelSpec("resnet18", 64, 128, "bfloat16", r18),
            ModelSpec("xception", 224, 8, "float32", {}),
        ],
        # bfloat16 keys: ours in bfloat16 against PyTorch under bfloat16 autocast.
        vs_pytorch=("ror", "resnet18", "ror_bfloat16", "resnet18_bfloat16"),
    )


def _accelerator_suite() -> Suite:
    return Suite(
        models=[
            ModelSpec("ror", 64, 512, "bfloat16", {}),
            ModelSpec("ror", 64, 512, "float32", {}),
            ModelSpec("resnet18", 64, 1024, "bfloat16", {}),
            ModelSpec("xception", 224, 128, "bfloat16", {}),
            ModelSpec("xception", 224, 128, "float32", {}),
        ],
        steps=20,
        windows=3,
        pipeline_batch=256,
        pipeline_batches=40,
        loop_workers=os.cpu_count() or 1,
        loop_steps=60,
        inference_batch=512,
        peak_matmul_size=8192,
        accelerator=True,
    )


SUITES = {"cpu": _cpu_suite, "accelerator": _accelerator_suite}


def get_suite(name: str, model_names: list[str] | None = None) -> Suite:
    if name not in SUITES:
        raise ValueError(f"--suite: expected one of {sorted(SUITES)}, got {name!r}")
    suite = SUITES[name]()
    if model_names:
        known = {m.name for m in suite.models}
        unknown = sorted(set(model_names) - known)
        if unknown:
            raise ValueError(
                f"--models: {unknown} not in the {name} suite; expected {sorted(known)}"
            )
        suite.models = [m for m in suite.models if m.name in model_names]
        suite.vs_pytorch = tuple(n for n in suite.vs_pytorch
                                 if n.removesuffix("_bfloat16") in model_names)
    return suite


def _skip(report: dict, what: str, why: str) -> None:
    log.warning("skipped %s: %s", what, why)
    report["skipped"][what] = why


def _build_bench(spec: ModelSpec, report: dict) -> StepBench | None:
    if spec.name not in models.BACKBONES:
        _skip(report, f"step.{spec.key}",
              f"model {spec.name!r} is not registered (have {models.available()})")
        return None
    try:
        return StepBench(spec)
    except TypeError as e:  # constructor options of a registry entry that differs
        _skip(report, f"step.{spec.key}", f"cannot build {spec.name} with {spec.kwargs}: {e}")
        return None


def _vs_pytorch(bench: StepBench, suite: Suite) -> dict[str, Any]:
    """Ours and PyTorch's step, alternating windows on the same cores; ratio of medians.

    PyTorch runs in a child process of its own (`TorchStepProcess`: its own malloc
    settings, its threads asleep while ours run). Each window starts with one untimed step:
    the first step after the other framework ran pays for the switch (caches, the other's
    pages), 10-30 % of a ResNet-18 step here, and which side pays it would otherwise depend
    only on the order of the windows.
    """
    from benchmarks.vs_pytorch import TorchStepProcess

    spec = bench.spec
    autocast = spec.dtype == "bfloat16"
    ours, theirs = [], []
    with TorchStepProcess(spec.name, spec.image_size, spec.batch, spec.kwargs,
                          autocast_bf16=autocast) as ref:
        ref.time_window(1)
        for _ in range(suite.vs_pytorch_windows):
            bench.time_window(1)
            ours.append(bench.time_window(suite.steps))
            ref.time_window(1)
            theirs.append(ref.time_window(suite.steps))
        version = ref.version
    bench.check_no_recompile()
    ours_img_s = spec.batch * suite.steps / statistics.median(ours)
    torch_img_s = spec.batch * suite.steps / statistics.median(theirs)
    return {
        "ratio": ours_img_s / torch_img_s,
        "img_s": ours_img_s,
        "torch_img_s": torch_img_s,
        "window_ratios": [t / o for o, t in zip(ours, theirs, strict=True)],
        "batch": spec.batch,
        "image_size": spec.image_size,
        "torch": f"{version} eager in its own process, channels_last, flush denormals, "
                 f"{os.cpu_count()} threads" + (", bfloat16 autocast" if autocast else ""),
    }


def _torch_missing() -> str | None:
    try:
        import benchmarks.vs_pytorch  # noqa: F401
    except ImportError as e:
        return (f"PyTorch reference unavailable ({e}); `pip install torch==2.13.0` and run "
                "from the repository root (benchmarks/ is not part of the package)")
    return None


def run_suite(suite: Suite, data_dir: Path | None, work_dir: Path) -> dict[str, Any]:
    """Runs every section of `suite`; returns the report (see module docstring for keys)."""
    devices = jax.devices()
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} CPU cores",
            "device_kind": devices[0].device_kind,
            "platform": devices[0].platform,
            "device_count": len(devices),
            "jax": jax.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        },
        "peak": {},
        "step": {},
        "skipped": {},
    }
    dtypes = sorted({m.dtype for m in suite.models})
    for dtype in dtypes:
        report["peak"][dtype] = peaks.measured_matmul_tflops(dtype, suite.peak_matmul_size)
    table_peak = peaks.device_peak_tflops(devices[0].device_kind)
    if suite.accelerator:
        report["meta"]["bf16_peak_tflops"] = table_peak

    benches: dict[str, StepBench] = {}
    for spec in suite.models:
        bench = _build_bench(spec, report)
        if bench is None:
            continue
        log.info("step %s: %dpx batch %d", spec.key, spec.image_size, spec.batch)
        row = measure(bench, suite.steps, suite.windows, report["peak"][spec.dtype])
        if suite.accelerator:
            row["img_s_per_device"] = row["img_s"] / bench.num_devices
            row["mfu"] = row["achieved_tflops"] / table_peak[1] if table_peak else None
        report["step"][spec.key] = row
        benches[spec.key] = bench

    missing = _torch_missing() if suite.vs_pytorch else None
    report["vs_pytorch"] = {}
    for name in suite.vs_pytorch:
        if name not in benches:
            _skip(report, f"vs_pytorch.{name}", f"no step benchmark for {name}")
        elif missing:
            _skip(report, f"vs_pytorch.{name}", missing)
        else:
            log.info("vs_pytorch %s", name)
            report["vs_pytorch"][name] = _vs_pytorch(benches[name], suite)

    data = pipeline_bench.prepare_data(data_dir, work_dir, suite.synthetic_num)
    log.info("pipeline on %s", data.description)
    report["pipeline"] = pipeline_bench.run(
        data, suite.pipeline_image_size, suite.pipeline_batch, suite.pipeline_workers,
        suite.pipeline_sample, suite.pipeline_batches,
    )

    first = next(iter(benches.values()), None)
    if first is None:
        _skip(report, "loop_efficiency", "no model could be benchmarked")
        _skip(report, "inference", "no model could be benchmarked")
    else:
        log.info("loop efficiency %s", first.spec.key)
        cached = decoded_cache.maybe_cached(
            data.source, data.tfds_dir, "train", first.spec.image_size,
            float(defaults.get_config().data.decoded_cache_gb))
        for key, source in (("loop", cached), ("loop_decode_every_epoch", data.source)):
            report[key] = loop_bench.run(first, source, suite.loop_steps, suite.windows,
                                         suite.loop_workers)
            report[key]["decoded_cache"] = source is not data.source
        report["loop_efficiency"] = report["loop"]["loop_efficiency"]
        jpegs = [data.source[i]["image"] for i in range(min(len(data.source),
                                                              suite.pipeline_sample))]
        report["inference"] = inference_bench.run(first, jpegs, suite.inference_batch)
    report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's CPU targets, each with its measured value and whether it is met."""
    out: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float | None, threshold: float) -> None:
        out[name] = {"value": value, "target": threshold,
                     "met": None if value is None else bool(value >= threshold)}

    pipe = report.get("pipeline", {})
    check("pipeline_per_worker_vs_decode_limit", pipe.get("per_worker_vs_decode_limit"), 0.7)
    check("pipeline_vs_naive", pipe.get("speedup_vs_naive"), 3.0)
    check("loop_efficiency", report.get("loop_efficiency"), 0.95)
    for name in ("ror", "resnet18"):
        check(f"vs_pytorch.{name}", report["vs_pytorch"].get(name, {}).get("ratio"), 1.0)
    return out


def format_report(report: dict[str, Any]) -> str:
    """Human-readable tables of the report."""
    lines = [f"{report['meta']['date']}  {report['meta']['machine']}  "
             f"device {report['meta']['device_kind']}  jax {report['meta']['jax']}"]
    lines.append("peak matmul TFLOP/s: " + ", ".join(
        f"{k} {v:.3f}" for k, v in report["peak"].items()))
    accel = any("mfu" in r for r in report["step"].values())
    head = (f"{'step':<20}{'px':>5}{'batch':>7}{'img/s':>10}{'ms/step':>10}{'compile s':>11}"
            f"{'GFLOP/img':>11}{'TFLOP/s':>9}{'util':>7}" + (f"{'MFU':>7}" if accel else ""))
    lines.append(head)
    for key, r in report["step"].items():
        util = f"{r['utilisation']:.2f}" if r["utilisation"] is not None else "-"
        mfu = (f"{r['mfu']:>7.3f}" if r.get("mfu") is not None else f"{'-':>7}") if accel else ""
        lines.append(f"{key:<20}{r['image_size']:>5}{r['batch']:>7}{r['img_s']:>10.1f}"
                     f"{r['ms_per_step']:>10.1f}{r['compile_s']:>11.1f}"
                     f"{r['flops_per_img'] / 1e9:>11.3f}{r['achieved_tflops']:>9.4f}{util:>7}"
                     + mfu)
    for key, r in report.get("vs_pytorch", {}).items():
        lines.append(f"vs_pytorch {key:<18} ours {r['img_s']:.1f} img/s, PyTorch "
                     f"{r['torch_img_s']:.1f} img/s: ratio {r['ratio']:.2f}")
    if "pipeline" in report:
        p = report["pipeline"]
        workers = ", ".join(f"{w} worker(s) {v:,.0f}" for w, v in p["img_s"].items())
        lines.append(f"pipeline ({p['source']}): decode limit {p['decode_limit_img_s']:,.0f} "
                     f"img/s; pipeline {workers} img/s; naive {p['naive_img_s']:,.0f} img/s")
    for key in ("loop", "loop_decode_every_epoch"):
        if key in report:
            lp = report[key]
            how = "decoded cache" if lp["decoded_cache"] else "decoding every epoch"
            lines.append(f"loop_efficiency {lp['loop_efficiency']:.3f} ({lp['model']}, {how}: "
                         f"loop {lp['loop_img_s']:.1f} img/s, step {lp['step_img_s']:.1f} img/s)")
    if "inference" in report:
        lines.append(f"inference {report['inference']['img_s']:,.0f} img/s "
                     f"(JPEG bytes -> labels, batch {report['inference']['batch']})")
    for name, t in report["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        state = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"target {name:<38} {value:>7} >= {t['target']:<5} {state}")
    for what, why in report["skipped"].items():
        lines.append(f"skipped {what}: {why}")
    return "\n".join(lines)
