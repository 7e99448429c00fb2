"""YuNet as an NCHW ONNX graph built from our params, for onnxruntime on CPU.

Why: on CPU the Flax net (NHWC, oneDNN convolutions) takes ~3x onnxruntime's time on the
upstream graph (29.6 vs 10.9 ms at 480x640, 2 cores), and a jax2onnx export of it keeps a
transpose around every NHWC conv (23.8 ms). This graph is the Flax `YuNet` node for node in
NCHW, with the weights `yunet.load_params()` returns (HWIO kernels -> OIHW; depthwise convs
as Conv group=C), so no upstream file is read at runtime and onnxruntime's optimiser sees
the plain Conv -> Relu / MaxPool / Resize chain it fuses (Conv+Relu, NCHWc layouts).

`run` takes what the JAX path takes, (B, H, W, 3) uint8 RGB with H and W multiples of 32.
The graph's input "image" is (B, 3, H, W) float32 BGR (layout "nchw_float", upstream's),
which `run` prepares in numpy (flip, transpose and cast in one copy): 2-8 % faster than
layout "nhwc_uint8", whose graph takes the uint8 array and transposes and casts it itself,
the flip folded into the stem's kernel (uint8 / float paired ratios 1.058-1.084 at 480x640,
1.023-1.058 at 736x960, two runs of 15 alternating rounds, 2 loaded cores, 2026-12-08;
casting before the transpose in the graph: 1.02-1.04). Outputs as `YuNet`'s:
f"{head}_{stride}" (B, H/s * W/s, C), cls and obj after a sigmoid. No `valid` mask: the
caller runs each image at its own size padded to 32 (OpenCV's padWithDivisor), so nothing
beyond it is in the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agr_jax.inference.yunet import HEAD_CHANNELS, HEADS, STRIDES

OPSET = 17
INPUT = "image"
LAYOUTS = ("nchw_float", "nhwc_uint8")  # the first is the faster, the default


class _Emitter:
    """Appends nodes and initializers; mirrors DPUnit / Stage of `yunet.YuNet`."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, p: Mapping, name: str, stride: int = 1, relu: bool = False,
             flip_input: bool = False) -> str:
        """Conv of a Flax (kh, kw, in/group, out) kernel; pad 1 for 3x3, group=C where
        the kernel has one input channel per group (depthwise)."""
        kernel = np.asarray(p["kernel"], np.float32)
        kh, kw, cin, cout = kernel.shape
        if flip_input:
            kernel = kernel[:, :, ::-1]
        w = self.const(f"{name}.weight", kernel.transpose(3, 2, 0, 1))
        b = self.const(f"{name}.bias", np.asarray(p["bias"], np.float32))
        group = cout if cin == 1 else 1
        pad = kh // 2
        y = self.op("Conv", [x, w, b], name, kernel_shape=[kh, kw], strides=[stride, stride],
                    pads=[pad] * 4, group=group)
        return self.op("Relu", [y], f"{name}.relu") if relu else y

    def dp(self, x: str, p: Mapping, name: str, relu: bool = True) -> str:
        """DPUnit: 1x1 conv, depthwise 3x3 conv, optional ReLU."""
        x = self.conv(x, p["conv1"], f"{name}.conv1")
        return self.conv(x, p["conv2"], f"{name}.conv2", relu=relu)

    def stage(self, x: str, p: Mapping, name: str) -> str:
        return self.dp(self.dp(x, p["conv1"], f"{name}.conv1"), p["conv2"], f"{name}.conv2")

    def pool(self, x: str) -> str:
        return self.op("MaxPool", [x], f"{x}.pool", kernel_shape=[2, 2], strides=[2, 2])

    def upsample2(self, x: str) -> str:
        """Resize nearest x2, asymmetric/floor (each cell repeated 2x2), as upstream's."""
        scales = self.const(f"{x}.scales", np.array([1, 1, 2, 2], np.float32))
        return self.op("Resize", [x, "", scales], f"{x}.up", mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def add(self, a: str, b: str, name: str) -> str:
        return self.op("Add", [a, b], name)

    def cells(self, x: str, name: str, channels: int, sigmoid: bool) -> str:
        """(B, C, H, W) -> (B, H*W, C), row-major cells, as the Flax head's reshape."""
        y = self.op("Transpose", [x], f"{name}.nhwc", perm=[0, 2, 3, 1])
        shape = self.const(f"{name}.shape", np.array([0, -1, channels], np.int64))
        y = self.op("Reshape", [y, shape], f"{name}.cells" if sigmoid else name)
        return self.op("Sigmoid", [y], name) if sigmoid else y


def build(params: Mapping, input_layout: str = LAYOUTS[0]) -> onnx.ModelProto:
    """The yunet_n graph of `params` (the tree `yunet.load_params()` returns).

    input_layout "nchw_float": (B, 3, H, W) float32 BGR, as upstream's ONNX;
    "nhwc_uint8": (B, H, W, 3) uint8 RGB, as the JAX path's canvas (kept for the benchmark:
    `benchmarks/yunet_runtime.py --layouts`)."""
    g = _Emitter()
    if input_layout == "nhwc_uint8":
        x = g.op("Transpose", [INPUT], "input.nchw", perm=[0, 3, 1, 2])
        x = g.op("Cast", [x], "input.float", to=TensorProto.FLOAT)
        flip, elem, dims = True, TensorProto.UINT8, ["B", "H", "W", 3]
    elif input_layout == "nchw_float":
        x, flip, elem, dims = INPUT, False, TensorProto.FLOAT, ["B", 3, "H", "W"]
    else:
        raise ValueError(f"input_layout: 'nhwc_uint8' or 'nchw_float', not {input_layout!r}")
    bb, neck, head = params["backbone"], params["neck"], params["bbox_head"]
    x = g.conv(x, bb["model0"]["conv1"], "backbone.model0.conv1", stride=2, relu=True,
               flip_input=flip)
    x = g.pool(g.dp(x, bb["model0"]["conv2"], "backbone.model0.conv2"))
    x = g.stage(x, bb["model1"], "backbone.model1")
    x = g.pool(g.stage(x, bb["model2"], "backbone.model2"))
    f8 = g.stage(x, bb["model3"], "backbone.model3")
    f16 = g.stage(g.pool(f8), bb["model4"], "backbone.model4")
    f32 = g.stage(g.pool(f16), bb["model5"], "backbone.model5")
    p32 = g.dp(f32, neck["lateral_convs_2"], "neck.lateral_convs_2")
    p16 = g.dp(g.add(f16, g.upsample2(p32), "neck.sum16"), neck["lateral_convs_1"],
               "neck.lateral_convs_1")
    p8 = g.dp(g.add(f8, g.upsample2(p16), "neck.sum8"), neck["lateral_convs_0"],
              "neck.lateral_convs_0")
    outputs = []
    for level, (stride, feat) in enumerate(zip(STRIDES, (p8, p16, p32), strict=True)):
        name = f"multi_level_share_convs_{level}_0"
        feat = g.dp(feat, head[name], f"bbox_head.{name}")
        for key in HEADS:
            name = f"multi_level_{key}_{level}"
            y = g.dp(feat, head[name], f"bbox_head.{name}", relu=False)
            outputs.append(g.cells(y, f"{key}_{stride}", HEAD_CHANNELS[key],
                                   key in ("cls", "obj")))
    graph = helper.make_graph(
        g.nodes, "yunet_n", [helper.make_tensor_value_info(INPUT, elem, dims)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["B", None, None])
         for o in outputs], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="agr_jax.inference.yunet_onnx")
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    onnx.checker.check_model(model)
    return model


def session(params: Mapping, input_layout: str = LAYOUTS[0], threads: int = 0):
    """An onnxruntime CPU InferenceSession of `build(params)`: all graph optimisations;
    threads 0 = onnxruntime's default (one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return ort.InferenceSession(build(params, input_layout).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def nchw_bgr(images: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 BGR, one copy."""
    return np.ascontiguousarray(images[..., ::-1].transpose(0, 3, 1, 2), np.float32)


def run(sess, images: np.ndarray) -> dict[str, np.ndarray]:
    """{f"{head}_{stride}": array} for (B, H, W, 3) uint8 RGB images, either layout."""
    if sess.get_inputs()[0].type == "tensor(float)":
        images = nchw_bgr(images)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {INPUT: images}), strict=True))
