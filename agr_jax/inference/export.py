"""The model as a portable file: StableHLO (`jax.export`) or ONNX (`jax2onnx`, no TensorFlow).

One function is exported: uint8 NHWC crops [B, S, S, 3] (aligned faces, as `detect="none"`
takes them) -> the calibrated outputs the `Predictor` reports, with a symbolic batch B so one
file serves every batch size:

    age           [B]     years
    age_interval  [B, 2]  the calibrated 90 % interval (NaN when the bundle has no calibration)
    gender_prob   [B, G]  temperature-scaled probabilities
    race_prob     [B, R]

Convolutions and pooling take XLA's plain forms (`conv_impl="xla"`; pooling does so by itself
on symbolic shapes): the CPU routings are custom calls and training devices. A sidecar
`<out>.json` holds the bundle's description (class names, image size, calibration) so another
runtime can label the outputs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agr_jax import evaluation, tasks
from agr_jax.inference.bundle import Bundle

FORMATS = ("stablehlo", "onnx")
OUTPUTS = ("age", "age_interval", "gender_prob", "race_prob")
INPUT = "image"
# jax2onnx without its orbax-checkpoint<0.11.37 pin (it runs with the 0.12 agr_jax needs)
ONNX_INSTALL = "pip install 'agr_jax[export]' && pip install --no-deps jax2onnx==0.17.1"
ONNX_MODULES = ("jax2onnx", "onnx", "onnxruntime")  # write, read, run


def onnx_missing() -> list[str]:
    """The modules of ONNX export and its checks that are not installed (empty: all are)."""
    return [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]


def portable(bundle: Bundle) -> Bundle:
    """The bundle with XLA's own convolutions (no CPU custom calls in the exported graph)."""
    return dataclasses.replace(bundle, model={**bundle.model, "conv_impl": "xla"})


def scaled_probs(probs: jnp.ndarray, temperature: float) -> jnp.ndarray:
    """`calibrate.scaled_probs` in JAX: softmax(log p / T)."""
    return jax.nn.softmax(jnp.log(jnp.clip(probs, 1e-12, 1.0)) / temperature, axis=-1)


def age_interval(age: jnp.ndarray, interval: dict[str, Any] | None,
                 max_age: float) -> jnp.ndarray:
    """`calibrate.age_interval` in JAX (group = how many edges lie at or below the age)."""
    if interval is None:  # NaN of the batch's shape (a symbolic batch: no jnp.full)
        return jnp.stack([age, age], -1) * jnp.float32(jnp.nan)
    low = jnp.asarray(interval["low"], jnp.float32)
    high = jnp.asarray(interval["high"], jnp.float32)
    if not len(interval["edges"]):  # one group (no empty tensors: onnxruntime refuses them)
        lo, hi = age + low[0], age + high[0]
    else:
        edges = jnp.asarray(interval["edges"], jnp.float32).reshape(1, -1)
        group = jnp.sum((age[:, None] >= edges).astype(jnp.int32), axis=1)
        lo, hi = age + jnp.take(low, group), age + jnp.take(high, group)
    return jnp.clip(jnp.stack([lo, hi], -1), 0.0, max_age)


def inference_fn(bundle: Bundle, views: int = 1) -> Callable[[jnp.ndarray], dict]:
    """crops (uint8 [B, S, S, 3]) -> {OUTPUTS}, the weights and calibration closed over."""
    bundle = portable(bundle)
    # float32 whatever the release computes in: onnxruntime and StableHLO consumers take it
    model, spec, cal = bundle.build_model("float32"), bundle.task_spec, bundle.calibration or {}
    variables = jax.tree.map(jnp.asarray, bundle.variables)

    def step(variables, batch):
        outputs, _ = model.apply(variables, batch["image"], train=False)
        preds = tasks.predictions(outputs, spec)
        return {"age_pred": preds["age"], "gender_prob": preds["gender_prob"],
                "race_prob": preds["race_prob"]}

    if views == 2:
        step = evaluation.tta(step, evaluation.tta_views(flip=True))

    def fn(image: jnp.ndarray) -> dict[str, jnp.ndarray]:
        preds = step(variables, {"image": image})
        age = preds["age_pred"].astype(jnp.float32)
        return {
            "age": age,
            "age_interval": age_interval(age, cal.get("age_interval"), spec.max_age),
            "gender_prob": scaled_probs(preds["gender_prob"], cal.get("gender_temperature", 1.0)),
            "race_prob": scaled_probs(preds["race_prob"], cal.get("race_temperature", 1.0)),
        }

    return fn


def ordered_outputs(fn: Callable[[jnp.ndarray], dict]) -> Callable[[jnp.ndarray], tuple]:
    """`fn` with its outputs as a flat tuple in OUTPUTS order, from ONE call: indexing a
    fresh call per output traces the network once per output, which XLA's CSE hides but an
    exported graph keeps (jax2onnx wrote the forward four times: onnxruntime ran 4x slow)."""

    def ordered(image: jnp.ndarray) -> tuple:
        out = fn(image)
        return tuple(out[k] for k in OUTPUTS)

    return ordered


def input_spec(bundle: Bundle) -> jax.ShapeDtypeStruct:
    size = bundle.image_size
    return jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"B, {size}, {size}, 3"), jnp.uint8)


# --- StableHLO -------------------------------------------------------------------------
def to_stablehlo(bundle: Bundle, views: int = 1,
                 platforms: Sequence[str] | None = None) -> bytes:
    """The serialised `jax.export.Exported` (reload with `load_stablehlo`)."""
    exported = jax.export.export(jax.jit(ordered_outputs(inference_fn(bundle, views))),
                                 platforms=platforms)(input_spec(bundle))
    return bytes(exported.serialize())


def load_stablehlo(path: str | Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A file written by `export(..., "stablehlo")` as a callable: crops -> {OUTPUTS}."""
    exported = jax.export.deserialize(bytearray(Path(path).read_bytes()))
    call = jax.jit(exported.call)
    return lambda crops: dict(zip(OUTPUTS, jax.device_get(call(jnp.asarray(crops))),
                                  strict=True))


# --- ONNX ------------------------------------------------------------------------------
def to_onnx(bundle: Bundle, views: int = 1) -> bytes:
    """The ONNX model (opset 23), input "image" and outputs named as OUTPUTS."""
    try:
        from jax2onnx import to_onnx as jax_to_onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs jax2onnx: {ONNX_INSTALL} (docs/serving.md)") from e

    proto = jax_to_onnx(ordered_outputs(inference_fn(bundle, views)), [input_spec(bundle)],
                        model_name="agr_jax", input_names=[INPUT],
                        output_names=list(OUTPUTS))
    meta = proto.metadata_props.add()
    meta.key, meta.value = "agr_jax", json.dumps(describe(bundle, views, "onnx"))
    return onnx_bytes(proto)


def onnx_bytes(proto: Any) -> bytes:
    """A jax2onnx model serialised without its intermediate shapes: jax2onnx declares some
    in the traced NHWC layout where its conv lowering made them NCHW, which onnxruntime-web
    refuses. They are optional in ONNX; runtimes infer their own."""
    del proto.graph.value_info[:]
    return proto.SerializeToString()


def load_onnx(path: str | Path, threads: int = 0) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """An onnxruntime session as a callable: crops -> {OUTPUTS} (threads 0: ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda crops: dict(zip(OUTPUTS, session.run(list(OUTPUTS), {INPUT: crops}),
                                  strict=True))


# --- both ------------------------------------------------------------------------------
def describe(bundle: Bundle, views: int, fmt: str) -> dict[str, Any]:
    """The sidecar: the signature plus everything but the weights."""
    size = bundle.image_size
    return {"format": fmt, "views": views,
            "input": {"name": INPUT, "dtype": "uint8", "shape": ["B", size, size, 3],
                      "layout": "NHWC RGB aligned face crops"},
            "outputs": {"age": ["B"], "age_interval": ["B", 2],
                        "gender_prob": ["B", len(bundle.gender_names)],
                        "race_prob": ["B", len(bundle.race_names)]},
            **bundle.describe()}


def export(bundle: Bundle, fmt: str, out: str | Path, views: int = 1,
           platforms: Sequence[str] | None = None) -> dict[str, Any]:
    """Writes `out` and `out.json`; returns the sidecar with the file sizes."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = (to_onnx(bundle, views) if fmt == "onnx"
            else to_stablehlo(bundle, views, platforms))
    out.write_bytes(data)
    sidecar = describe(bundle, views, fmt)
    if fmt == "stablehlo":
        sidecar["platforms"] = list(platforms) if platforms else [jax.default_backend()]
    Path(f"{out}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return {**sidecar, "path": str(out), "bytes": len(data)}


def load(path: str | Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Either format, by its sidecar (or the suffix): crops -> {OUTPUTS} as numpy."""
    path = Path(path)
    sidecar = Path(f"{path}.json")
    fmt = (json.loads(sidecar.read_text())["format"] if sidecar.exists()
           else "onnx" if path.suffix == ".onnx" else "stablehlo")
    return load_onnx(path) if fmt == "onnx" else load_stablehlo(path)
