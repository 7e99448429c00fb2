"""The programs the product runs on a GPU or TPU lower for them from this CPU host, with
nothing CPU-only inside: `jax.export` for platforms ("cuda", "tpu") of the train step of the
release recipes (configs/utkface_faceres.py, configs/utkface_fast.py), the device-placement
step of configs/utkface_accel.py (split on the device, `steps_per_call` steps per call), the
predictor's forward for both releases and the detectors' nets (MTCNN, YuNet). A program
fails when `jax.export` refuses one of its custom calls (it accepts only targets with a
compatibility guarantee on that platform) or when its text names a oneDNN FFI target
(`models/onednn_conv.py`) or a host callback (`pure_callback`, `io_callback`,
`jax.debug.callback`). No accelerator is needed: inputs are `jax.ShapeDtypeStruct`s, so
nothing is allocated or compiled; tiny batches keep tracing short.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agr_jax import configuration
from agr_jax.data import pipeline, tfds_builders
from agr_jax.models import onednn_conv
from agr_jax.train import calls, device_data, loop, multi_step, parallel, phases
from agr_jax.train.state import create_train_state
from agr_jax.train.step import make_train_step

PLATFORMS = ("cuda", "tpu")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BATCH = 8  # per program: tiny, tracing cost does not depend on it
SPLIT_ROWS = 64  # rows of the device-resident split in the device-placement step
CUSTOM_CALL = re.compile(r"stablehlo\.custom_call @([\w.$-]+)")


def forbidden(target: str) -> bool:
    """A custom call no accelerator runs: the oneDNN FFI, or a callback into the host."""
    return target in onednn_conv.TARGETS.values() or "callback" in target or "cpu" in target


def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


def assert_lowers_clean(fn: Callable, args: tuple) -> None:
    """One export for all of PLATFORMS (a multi-platform module: one trace, each platform's
    branches of `lax.platform_dependent` kept, custom calls checked against each)."""
    try:
        text = jax.export.export(fn, platforms=PLATFORMS)(*args).mlir_module()
    except Exception as error:  # a custom call without a guarantee there, a host callback...
        pytest.fail(f"jax.export for {PLATFORMS} refused it: {type(error).__name__}: "
                    f"{str(error)[:600]}")
    bad = sorted(t for t in set(CUSTOM_CALL.findall(text)) if forbidden(t))
    assert not bad, f"CPU-only custom calls in the {PLATFORMS} program: {bad}"
    assert "stablehlo.convolution" in text or "dot_general" in text, "an empty program?"


# --- training ----------------------------------------------------------------------------
def train_program(config_file: str, placement: str) -> tuple[Callable, tuple]:
    """The compiled train call of `config_file` as `calls.build` composes it (per-device step,
    device gather for `placement="device"`, K steps per call), with abstract state and batch."""
    config = configuration.load_config_file(CONFIGS / config_file)
    dp = parallel.DataParallel.create(config.parallel)
    with pytest.MonkeyPatch.context() as patch:  # the race count a prepared UTKFace declares
        patch.setattr(tfds_builders, "dataset_info", lambda _: {"num_races": 5})
        model, spec = loop.build_model_and_spec(config, "unused", bn_axis_name=dp.axis_name)
    steps_per_epoch, total = loop.plan_steps(config, 16_000)
    tx = phases.run_optimizer(config, total, steps_per_epoch)
    size = int(config.data.image_size)
    ema = float(config.optimizer.get("ema_decay", 0.0)) > 0
    state = jax.eval_shape(lambda: create_train_state(model, tx, (size, size, 3), 0, ema=ema))
    body = make_train_step(model, tx, spec, axis_name=dp.axis_name,
                           skip_nonfinite=bool(config.get("skip_nonfinite", False)),
                           ema_decay=float(config.optimizer.get("ema_decay", 0.0)),
                           phases=phases.parse_phases(config.init.phases, steps_per_epoch))
    on_device, k = placement == "device", calls.steps_per_call(config)
    batch = batch_spec(config, rows_only=on_device, steps=k)
    if on_device:
        body = device_data.gathering(body)
    if k > 1:
        body = multi_step.scan_steps(body)
    call = dp.train_step(body, with_split=on_device, stacked=k > 1)
    if not on_device:
        return call, (state, batch)
    split = {"image": jax.ShapeDtypeStruct((SPLIT_ROWS, size, size, 3), jnp.uint8),
             **{key: jax.ShapeDtypeStruct((SPLIT_ROWS,), dtype)
                for key, dtype in pipeline.LABEL_DTYPES.items()}}
    return call, (state, split, batch)


def batch_spec(config, rows_only: bool, steps: int) -> dict:
    """What the training pipeline sends (`pipeline.LoadBatch`): pixels and labels, or only
    row numbers when the split is on the device; flip/crop draws when the step augments."""
    size, lead = int(config.data.image_size), ((steps,) if steps > 1 else ()) + (BATCH,)
    out = {pipeline.ROWS: jax.ShapeDtypeStruct(lead, jnp.int32)} if rows_only else {
        "image": jax.ShapeDtypeStruct((*lead, size, size, 3), jnp.uint8),
        **{key: jax.ShapeDtypeStruct(lead, dtype)
           for key, dtype in pipeline.LABEL_DTYPES.items()}}
    if pipeline.augments_on_device(config.data.augment, config.data.augment_on):
        out[pipeline.FLIP_CROP] = jax.ShapeDtypeStruct((*lead, 3), jnp.int32)
    return out


@pytest.mark.parametrize("config_file,placement", [
    ("utkface_faceres.py", "host"),  # the default release's recipe
    ("utkface_fast.py", "host"),  # the fast release's recipe
    ("utkface_accel.py", "device"),  # the split on the device, steps_per_call = 23
])
def test_train_step_lowers_for_accelerators(config_file, placement):
    assert_lowers_clean(*train_program(config_file, placement))


# --- inference -----------------------------------------------------------------------------
@pytest.mark.parametrize("release", ["default", "fast"])
def test_predictor_forward_lowers_for_accelerators(release):
    from agr_jax.inference.predictor import Predictor
    from agr_jax.inference.release import read_released

    bundle = read_released(release)
    # the release's own compute dtype: what a GPU runs (this CPU may fall back to float32)
    predictor = Predictor(bundle, compute_dtype=bundle.compute_dtype, buckets=(BATCH,))
    crops = jax.ShapeDtypeStruct((BATCH, bundle.image_size, bundle.image_size, 3), jnp.uint8)
    assert_lowers_clean(predictor._forward, (abstract(predictor._variables), crops))


def mtcnn_programs() -> dict[str, tuple[Callable, tuple]]:
    from agr_jax.inference.detect import MTCNNDetector, pyramid_scales

    detector = MTCNNDetector()
    params = abstract(detector.params)
    side = 128  # the smallest canvas bucket: its pyramid's every level
    scales = pyramid_scales(side, detector.min_face_size, detector.factor)
    canvases = [jax.ShapeDtypeStruct((1, int(side * s + 1), int(side * s + 1), 3), jnp.float32)
                for s in scales]
    valid = jax.ShapeDtypeStruct((1, len(scales), 2), jnp.int32)
    crops = {n: jax.ShapeDtypeStruct((BATCH, n, n, 3), jnp.float32) for n in (24, 48)}
    return {"mtcnn.pnet": (detector._pnet, (params["pnet"], canvases, valid)),
            "mtcnn.rnet": (detector._rnet, (params["rnet"], crops[24])),
            "mtcnn.onet": (detector._onet, (params["onet"], crops[48]))}


def yunet_programs() -> dict[str, tuple[Callable, tuple]]:
    from agr_jax.inference.yunet import YuNetDetector

    detector = YuNetDetector(runtime="jax")  # the jitted program under test
    (h, w), batch = detector.canvases[0], detector.batches[0]
    canvas = jax.ShapeDtypeStruct((batch, h, w, 3), jnp.uint8)
    valid = jax.ShapeDtypeStruct((batch, 2), jnp.int32)  # each image's size in its canvas
    return {"yunet": (detector._run, (abstract(detector.params), canvas, valid))}


# Every detector's jitted programs: one entry per detector.
DETECTOR_PROGRAMS: dict[str, Callable[[], dict[str, tuple[Callable, tuple]]]] = {
    "mtcnn": mtcnn_programs,
    "yunet": yunet_programs,
}


@pytest.mark.parametrize("detector", sorted(DETECTOR_PROGRAMS))
def test_detector_nets_lower_for_accelerators(detector):
    programs = DETECTOR_PROGRAMS[detector]()
    assert programs
    for name, (fn, args) in programs.items():
        try:
            assert_lowers_clean(fn, args)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


# --- the check itself --------------------------------------------------------------------
def test_the_check_catches_onednn_and_host_callbacks():
    """The same check on programs that do hold a CPU-only call fails: a model whose
    convolutions were routed to oneDNN at trace time regardless of the lowering platform
    (the routing before `conv_general_dilated_by_platform`), and a host callback."""
    if not onednn_conv.available():
        pytest.skip(f"oneDNN FFI not buildable here: {onednn_conv.status()}")
    x = jax.ShapeDtypeStruct((1, 8, 8, 4), jnp.float32)
    w = jax.ShapeDtypeStruct((3, 3, 4, 4), jnp.float32)
    onednn = jax.jit(lambda a, b: onednn_conv.conv(a, b, (1, 1), ((1, 1), (1, 1))))
    with pytest.raises(pytest.fail.Exception, match="agr_onednn_conv_forward"):
        assert_lowers_clean(onednn, (x, w))
    # the text scan, for targets jax.export would let through: finds it in a CPU lowering
    assert [t for t in CUSTOM_CALL.findall(onednn.lower(x, w).as_text()) if forbidden(t)] == [
        onednn_conv.TARGETS["forward"]]
    callback = jax.jit(lambda a: jax.pure_callback(np.sin, a, a) + jnp.sum(a @ a.T))
    v = jax.ShapeDtypeStruct((4, 4), jnp.float32)
    with pytest.raises(pytest.fail.Exception, match="refused it"):
        assert_lowers_clean(callback, (v,))
    assert forbidden("xla_ffi_python_cpu_callback") and forbidden("agr_onednn_conv_forward")
    assert not forbidden("cu_threefry2x32")
