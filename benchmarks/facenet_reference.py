"""facenet-pytorch's MTCNN as a reference for tests, importable although torchvision is broken.

facenet-pytorch's detect_face.py imports `torchvision.ops.boxes.batched_nms` (and
`torchvision.transforms.functional`, used only by its face extraction). When torchvision cannot
be imported — the PyPI torchvision 0.28.0 wheel fails with "operator torchvision::nms does not
exist" next to torch 2.13.0+cpu, and no matching CPU build is on the registries — stand-in
modules provide a pure-torch `batched_nms` with torchvision's semantics: greedy by descending
score, IoU with areas (x1-x0)*(y1-y0) (no +1), suppress IoU > threshold, per class, kept
indices in descending score order. Everything else of the reference runs unchanged.
"""

from __future__ import annotations

import sys
import types


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
