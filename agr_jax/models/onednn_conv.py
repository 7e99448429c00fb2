"""oneDNN convolutions for XLA:CPU through the FFI (`model.conv_impl="onednn"` / `"auto"`).

XLA's CPU convolution runs far below oneDNN (the library PyTorch uses on CPU) on small-face
layers, the weight gradient worst (3x3 conv 32x32x48 -> 48, batch 128, 2 cores: XLA forward +
both gradients ~450 ms, oneDNN ~100 ms; benchmarks/conv_layers.py). This module compiles
`onednn_conv.cc` against the oneDNN wheels (`onednn-cpu-gomp`, `onednn-devel-cpu-gomp`:
dependencies of agr_jax on Linux x86-64) and JAX's FFI headers on first use, caches the
library under `~/.cache/agr_jax/onednn/` keyed by everything that goes into it (source, the
jaxlib version and its FFI headers, the compiler's version, the oneDNN library), registers
the FFI targets and exposes `conv`: a float32/bfloat16 NHWC/HWIO convolution (grouped and depthwise
too) with a custom VJP whose gradients are oneDNN's backward-data and backward-weights
primitives.

`status()` says whether it is usable and, when not, why (no wheel, no C++ compiler, build
error): `conv_impl="auto"` then falls back to the matmul routing and says so once.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from agr_jax import paths
from agr_jax.models.taps import Pads, patches

SOURCE = Path(__file__).with_name("onednn_conv.cc")
TARGETS = {
    "forward": "agr_onednn_conv_forward",
    "backward_data": "agr_onednn_conv_backward_data",
    "backward_weights": "agr_onednn_conv_backward_weights",
    # Throws a chosen C++ exception, to test that each becomes a Python error (not an abort).
    "throw_for_test": "agr_onednn_throw_for_test",
}
SYMBOLS = {
    "forward": "AgrOnednnConvForward",
    "backward_data": "AgrOnednnConvBackwardData",
    "backward_weights": "AgrOnednnConvBackwardWeights",
    "throw_for_test": "AgrOnednnThrowForTest",
}
ROOT_ENV = "AGR_JAX_ONEDNN_ROOT"
logger = logging.getLogger(__name__)  # a prefix holding include/oneapi/dnnl and lib/libdnnl.so


class OneDnnUnavailable(RuntimeError):
    """oneDNN convolutions cannot be used here; the message says why."""


def _onednn_root() -> Path:
    candidates = [os.environ[ROOT_ENV]] if os.environ.get(ROOT_ENV) else [sys.prefix]
    for root in map(Path, candidates):
        if (root / "include/oneapi/dnnl/dnnl.hpp").is_file() and (root / "lib/libdnnl.so").exists():
            return root
    raise OneDnnUnavailable(
        f"no oneDNN headers and library under {candidates[0]} (expected include/oneapi/dnnl/"
        f"dnnl.hpp and lib/libdnnl.so): `pip install onednn-cpu-gomp onednn-devel-cpu-gomp` "
        f"(agr_jax's own dependencies on Linux x86-64) or set {ROOT_ENV}")


def _cache_dir() -> Path:
    return paths.cache_dir("onednn")


def _build_key(compiler: str, root: Path) -> str:
    """Digest of everything the built library depends on, so a change to any rebuilds it:
    the source, jax and jaxlib (whose FFI headers it compiles against: their text too), the
    compiler (`--version`) and the oneDNN library it links."""
    library = (root / "lib/libdnnl.so").resolve()
    stat = library.stat()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True)
    headers = sorted(Path(jax.ffi.include_dir()).rglob("*.h"))
    parts = [SOURCE.read_bytes(), jax.__version__.encode(), jaxlib.__version__.encode(),
             *(h.read_bytes() for h in headers),
             f"{shutil.which(compiler) or compiler}:{version.returncode}:{version.stdout}".encode(),
             f"{library}:{stat.st_size}:{stat.st_mtime_ns}".encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def _build(root: Path) -> Path:
    """Compiles the FFI library once per `_build_key`; atomic under races."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise OneDnnUnavailable("no C++ compiler (g++/c++ or $CXX) to build the oneDNN FFI")
    digest = _build_key(compiler, root)
    target = _cache_dir() / f"libagr_onednn_{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        scratch = Path(tmp) / target.name
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-std=c++17", "-fopenmp", "-w",
               f"-I{jax.ffi.include_dir()}", f"-I{root / 'include'}", str(SOURCE),
               f"-L{root / 'lib'}", "-ldnnl", f"-Wl,-rpath,{root / 'lib'}", "-o", str(scratch)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise OneDnnUnavailable(f"building {SOURCE.name} failed ({' '.join(cmd)}):\n"
                                    f"{done.stderr[-2000:]}")
        os.replace(scratch, target)
    return target


omp_wait_policy_set_here = False


@functools.cache
def _load() -> str | OneDnnUnavailable:
    """Builds, loads and registers the FFI targets; the exception (not raised) if impossible."""
    # Idle OpenMP threads that spin (libgomp's default) steal the core from the input
    # pipeline and from XLA's own threads between convolutions; read when libgomp loads.
    global omp_wait_policy_set_here
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        omp_wait_policy_set_here = True  # child processes should not inherit it by accident
    try:
        library = ctypes.cdll.LoadLibrary(str(_build(_onednn_root())))
    except OneDnnUnavailable as error:
        return error
    except OSError as error:  # cache not writable, $CXX missing, library not loadable
        return OneDnnUnavailable(f"building or loading the oneDNN FFI library failed: {error}")
    for kind, name in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, SYMBOLS[kind])),
                                    platform="cpu")
    return "ready"


def status() -> str:
    """"ready", or the reason oneDNN convolutions are unavailable."""
    loaded = _load()
    return loaded if isinstance(loaded, str) else str(loaded)


def available() -> bool:
    return status() == "ready"


def require() -> None:
    loaded = _load()
    if not isinstance(loaded, str):
        raise loaded


@functools.cache
def supports(dtype: Any) -> bool:
    """Whether this CPU's oneDNN runs `dtype` convolutions (bfloat16 needs AVX-512 at least):
    one tiny forward and backward, run once per process."""
    if not available():
        return False
    x = np.ones((1, 4, 4, 2), dtype)
    w = np.ones((3, 3, 2, 2), dtype)
    pads = ((1, 1), (1, 1))
    try:
        with jax.ensure_compile_time_eval():
            jax.block_until_ready(jax.jit(jax.grad(
                lambda a, b: jnp.sum(conv(a, b, (1, 1), pads).astype(jnp.float32)),
                argnums=(0, 1)))(x, w))
    except Exception as error:  # oneDNN reports an unimplemented primitive at run time
        logger.warning("oneDNN convolutions unavailable for %s on this CPU (%s): XLA's "
                       "convolution instead", np.dtype(dtype).name, error)
        return False
    return True


def threads_per_call() -> int:
    """Cores per CPU device: `cpu_devices=2` runs two convolutions at once, one core each."""
    return max(1, (os.cpu_count() or 1) // max(1, jax.local_device_count("cpu")))


def _call(kind: str, shape: tuple[int, ...], a, b, strides, pads: Pads):
    require()
    return jax.ffi.ffi_call(TARGETS[kind], jax.ShapeDtypeStruct(shape, a.dtype))(
        a, b,
        strides=np.asarray(strides, np.int64),
        padding=np.asarray([p for pair in pads for p in pair], np.int64),
        threads=np.int64(threads_per_call()),
    )


def output_shape(x_shape, w_shape, strides, pads: Pads) -> tuple[int, int, int, int]:
    """NHWC output shape of an NHWC x HWIO convolution with explicit padding."""
    n, h, w, _ = x_shape
    kh, kw, _, o = w_shape
    return (n, (h + sum(pads[0]) - kh) // strides[0] + 1,
            (w + sum(pads[1]) - kw) // strides[1] + 1, o)


def conv(x: jnp.ndarray, w: jnp.ndarray, strides: tuple[int, int], pads: Pads) -> jnp.ndarray:
    """NHWC x HWIO convolution, both float32 or both bfloat16 (the result too), non-negative
    explicit padding, no dilation. Grouped when the kernel has fewer input channels than `x`
    ([kh, kw, C / groups, O], as `lax.conv_general_dilated` with `feature_group_count`).

    A strided 1x1 kernel runs as a subsample (XLA) then a unit-stride oneDNN convolution:
    oneDNN's own strided 1x1 path ("rtus") computes the NHWC weight gradient with a wrong
    workspace offset when the input has fewer channels than its channel block (8 on AVX2, 16
    on AVX-512): wrong gradients that change from call to call on AVX2, crashes on AVX-512
    (uxlfoundation/oneDNN#6035, still in the 3.2 wheels). Same values, no rtus at all.
    """
    if w.shape[:2] == (1, 1) and tuple(strides) != (1, 1):
        return _primitive_conv(patches(x, 1, 1, strides, pads), w, (1, 1), ((0, 0), (0, 0)))
    return _primitive_conv(x, w, strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _primitive_conv(x, w, strides: tuple[int, int], pads: Pads):
    return _call("forward", output_shape(x.shape, w.shape, strides, pads), x, w, strides, pads)


def _conv_fwd(x, w, strides, pads):
    return _primitive_conv(x, w, strides, pads), (x, w)


def _conv_bwd(strides, pads, residuals, dy):
    x, w = residuals
    dw = _call("backward_weights", w.shape, x, dy, strides, pads)
    dx = _call("backward_data", x.shape, dy, w, strides, pads)
    return dx, dw


_primitive_conv.defvjp(_conv_fwd, _conv_bwd)
