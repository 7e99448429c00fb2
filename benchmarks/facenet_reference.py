"""facenet-pytorch's MTCNN as a reference for tests, importable although torchvision is broken.

facenet-pytorch's detect_face.py imports `torchvision.ops.boxes.batched_nms` (and
`torchvision.transforms.functional`, used only by its face extraction). When torchvision cannot
be imported — the PyPI torchvision 0.28.0 wheel fails with "operator torchvision::nms does not
exist" next to torch 2.13.0+cpu, and no matching CPU build is on the registries — stand-in
modules provide a pure-torch `batched_nms` with torchvision's semantics: greedy by descending
score, IoU with areas (x1-x0)*(y1-y0) (no +1), suppress IoU > threshold, per class, kept
indices in descending score order. Everything else of the reference runs unchanged.

Also facenet-pytorch's InceptionResnetV1 as the importer's reference: `python -m
benchmarks.facenet_reference` writes tests/data/facenet_reference.npz (see below).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path


def torch_batched_nms(boxes, scores, idxs, iou_threshold):
    import torch

    keep_all = []
    for cls in torch.unique(idxs):
        members = torch.nonzero(idxs == cls).flatten()
        b, s = boxes[members], scores[members]
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        order = torch.argsort(s, descending=True, stable=True)
        while order.numel():
            i, rest = order[0], order[1:]
            keep_all.append(members[i])
            lt = torch.maximum(b[i, :2], b[rest, :2])
            rb = torch.minimum(b[i, 2:], b[rest, 2:])
            inter = (rb - lt).clamp(min=0).prod(dim=1)
            order = rest[inter / (areas[i] + areas[rest] - inter) <= iou_threshold]
    if not keep_all:
        return torch.zeros(0, dtype=torch.int64)
    keep = torch.stack(keep_all)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def _install_torchvision_stand_in() -> list[str]:
    names = ["torchvision", "torchvision.ops", "torchvision.ops.boxes",
             "torchvision.transforms", "torchvision.transforms.functional"]
    modules = {n: types.ModuleType(n) for n in names}
    modules["torchvision.ops.boxes"].batched_nms = torch_batched_nms
    modules["torchvision.ops"].boxes = modules["torchvision.ops.boxes"]
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    for name in names:
        sys.modules.pop(name, None)
    sys.modules.update(modules)
    return names


def load_reference_mtcnn():
    """(facenet_pytorch.MTCNN instance with keep_all, whether the NMS stand-in is used).
    Raises ImportError when torch or facenet-pytorch is absent."""
    import torch  # noqa: F401

    stand_in: list[str] = []
    try:
        import torchvision.ops.boxes  # noqa: F401
    except Exception:  # RuntimeError from the mismatched C extension, or ImportError
        stand_in = _install_torchvision_stand_in()
    try:
        from facenet_pytorch import MTCNN
    finally:
        for name in stand_in:  # facenet keeps its references; nobody else sees the stand-in
            sys.modules.pop(name, None)

    return MTCNN(keep_all=True, device="cpu"), bool(stand_in)


def reference_detect(mtcnn, image):
    """facenet-pytorch's boxes (N, 4), scores (N,), landmarks (N, 5, 2) as float arrays,
    largest box first (its select_largest order); N may be 0."""
    import numpy as np

    boxes, probs, points = mtcnn.detect(image, landmarks=True)
    if boxes is None:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    return (np.asarray(boxes, np.float64), np.asarray(probs, np.float64),
            np.asarray(points, np.float64))


# --- InceptionResnetV1: the importer's reference (tests/test_convert_facenet.py) -----------
# python -m benchmarks.facenet_reference writes tests/data/facenet_reference.npz: the
# state-dict layout of facenet-pytorch's InceptionResnetV1 (names, shapes, dtypes), input
# pixels, and the embeddings torch computes with weights drawn by `random_state_dict` (numpy,
# so the test redraws them without torch), with a per-tensor sum to detect a changed stream.
FACENET_REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "facenet_reference.npz"


def facenet_model_module():
    """facenet_pytorch.models.inception_resnet_v1 without the package __init__ (which imports
    MTCNN and torchvision's nms op, missing from this torch build). ImportError without it."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        raise ImportError("facenet-pytorch is not installed: "
                          "pip install --no-deps facenet-pytorch==2.6.0")
    root = Path(spec.submodule_search_locations[0])
    saved = {k: sys.modules.get(k) for k in ("facenet_pytorch", "facenet_pytorch.models")}
    try:
        for name, path in (("facenet_pytorch", root), ("facenet_pytorch.models", root / "models")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
        name = "facenet_pytorch.models.inception_resnet_v1"
        module_spec = importlib.util.spec_from_file_location(
            name, root / "models" / "inception_resnet_v1.py")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def random_state_dict(layout: list[tuple[str, tuple[int, ...], str]], seed: int = 0) -> dict:
    """Weights for `layout` (name, shape, dtype), drawn in order from numpy's PCG64: kernels
    as torch initialises them (uniform +-1/sqrt(fan in)), BatchNorm statistics, betas and
    biases random too, gammas in [0.7, 1.3] (positive: the importer folds them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape, dtype in layout:
        if not np.issubdtype(np.dtype(dtype), np.floating):
            out[name] = np.zeros(shape, dtype)  # num_batches_tracked
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype(dtype)
        elif name.endswith("running_mean") or (name.endswith(".bias") and len(shape) == 1):
            out[name] = rng.normal(0.0, 0.1, shape).astype(dtype)
        elif len(shape) == 1:  # a BatchNorm gamma
            out[name] = rng.uniform(0.7, 1.3, shape).astype(dtype)
        else:
            bound = 1 / np.sqrt(np.prod(shape[1:]))
            out[name] = rng.uniform(-bound, bound, shape).astype(dtype)
    return out


def read_layout(reference) -> list[tuple[str, tuple[int, ...], str]]:
    """The (name, shape, dtype) list stored in a facenet reference file."""
    dims, flat = reference["ndims"], reference["shapes"].tolist()
    shapes, at = [], 0
    for n in dims:
        shapes.append(tuple(flat[at:at + n]))
        at += n
    return list(zip(reference["names"].tolist(), shapes, reference["dtypes"].tolist(),
                    strict=True))


def write_facenet_reference(out: Path = FACENET_REFERENCE) -> None:
    import numpy as np
    import torch

    from agr_jax.convert import facenet

    net = facenet_model_module().InceptionResnetV1(pretrained=None).eval()
    layout = [(k, tuple(v.shape), str(v.numpy().dtype)) for k, v in net.state_dict().items()]
    state = random_state_dict(layout)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    pixels = np.random.default_rng(1).integers(0, 256, (2, 80, 80, 3), dtype=np.uint8)
    inputs = (pixels.astype(np.float32) - 127.5) / 127.5  # facenet's fixed_image_standardization
    with torch.no_grad():
        embeddings = net(torch.from_numpy(inputs.transpose(0, 3, 1, 2)
                                          * facenet.PIXEL_SCALE_FIX)).numpy()
    np.savez_compressed(
        out, names=np.asarray([n for n, _, _ in layout]),
        ndims=np.asarray([len(s) for _, s, _ in layout]),
        shapes=np.asarray([d for _, s, _ in layout for d in s], np.int64),
        dtypes=np.asarray([d for _, _, d in layout]),
        sums=np.asarray([float(np.sum(state[n], dtype=np.float64)) for n, _, _ in layout]),
        pixels=pixels, embeddings=embeddings)
    print(f"wrote {out}: {len(layout)} tensors, embeddings {embeddings.shape}")


if __name__ == "__main__":
    write_facenet_reference()
