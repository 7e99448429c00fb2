"""The MTCNN detector's three nets as portable files, exported as the model is (export.py).

The nets are what runs on the device; the pyramid, NMS and box arithmetic around them stay
host code (`detect.py`), to be rewritten in the target runtime. Each net takes float32 NHWC
crops normalised as MTCNN expects, (pixel - 127.5) / 128, with a symbolic batch B:

    pnet  [B, S, S, 3] -> prob [B, h, w], reg [B, h, w, 4]      (S: --pnet_side, one canvas)
    rnet  [B, 24, 24, 3] -> prob [B], reg [B, 4]
    onet  [B, 48, 48, 3] -> prob [B], reg [B, 4], landmarks [B, 10] (x0..x4, y0..y4)

Files: OUT_DIR/{pnet,rnet,onet}.{stablehlo,onnx} and mtcnn.json (signatures).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from agr_jax.inference.export import onnx_bytes
from agr_jax.models.pooling import export_max_pool

OUTPUT_NAMES = {"pnet": ("prob", "reg"), "rnet": ("prob", "reg"),
                "onet": ("prob", "reg", "landmarks")}


def _ceil_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
    """`mtcnn.max_pool_ceil` (torch's ceil_mode) without `jnp.pad` on a symbolic batch,
    which jax2onnx cannot lower: the same -inf padding, given to the reduce-window."""
    pads = []
    for n in x.shape[1:3]:
        out = -(-(n - window) // stride) + 1
        pads.append((0, (out - 1) * stride + window - n))
    return export_max_pool(x, (window, window), (stride, stride), tuple(pads))


@contextlib.contextmanager
def _exportable_pooling() -> Iterator[None]:
    from agr_jax.inference import mtcnn

    original, mtcnn.max_pool_ceil = mtcnn.max_pool_ceil, _ceil_pool
    try:
        yield
    finally:
        mtcnn.max_pool_ceil = original


def net_functions(pnet_side: int = 320,
                  params: dict | None = None) -> dict[str, tuple[Callable, jax.ShapeDtypeStruct]]:
    """{net: (crops -> tuple of outputs, input spec)}, the weights closed over."""
    from agr_jax.inference import mtcnn

    params = params if params is not None else mtcnn.load_params()
    sides = {"pnet": pnet_side, "rnet": 24, "onet": 48}
    modules = {"pnet": mtcnn.PNet(conv_impl="xla"), "rnet": mtcnn.RNet(conv_impl="xla"),
               "onet": mtcnn.ONet(conv_impl="xla")}  # no CPU custom calls in the graph
    out = {}
    for name, module in modules.items():
        variables = {"params": params[name]}

        def fn(crops, module=module, variables=variables):
            with jax.default_matmul_precision("float32"):
                return tuple(module.apply(variables, crops))

        side = sides[name]
        spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"B, {side}, {side}, 3"),
                                    jnp.float32)
        out[name] = (fn, spec)
    return out


def export_mtcnn(fmt: str, out_dir: str | Path, pnet_side: int = 320,
                 params: dict | None = None) -> dict[str, Any]:
    """Writes the three nets in `fmt` ("stablehlo" or "onnx") and mtcnn.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"format": fmt, "normalisation": "(pixel - 127.5) / 128",
                            "layout": "NHWC RGB float32", "nets": {}}
    with _exportable_pooling():
        for name, (fn, spec) in net_functions(pnet_side, params).items():
            path = out_dir / f"{name}.{fmt}"
            if fmt == "onnx":
                from jax2onnx import to_onnx

                proto = to_onnx(fn, [spec], model_name=name, input_names=["crops"],
                                output_names=list(OUTPUT_NAMES[name]))
                path.write_bytes(onnx_bytes(proto))
            elif fmt == "stablehlo":
                path.write_bytes(bytes(jax.export.export(jax.jit(fn))(spec).serialize()))
            else:
                raise ValueError(f"format: expected stablehlo or onnx, got {fmt!r}")
            info["nets"][name] = {"path": path.name, "input": ["B", *spec.shape[1:]],
                                  "outputs": list(OUTPUT_NAMES[name])}
    (out_dir / "mtcnn.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
