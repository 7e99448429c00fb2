"""facenet importer parity: facenet-pytorch's InceptionResnetV1 with random weights (BN
statistics and gammas included) and the converted agr_jax model give the same embeddings."""

import importlib.util
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from agr_jax import models
from agr_jax.convert import facenet

torch = pytest.importorskip("torch")


def facenet_model_module():
    """facenet_pytorch.models.inception_resnet_v1 without the package __init__ (which imports
    MTCNN and torchvision's nms op, missing from this torch build)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        pytest.skip("facenet-pytorch is not installed")
    root = Path(spec.submodule_search_locations[0])
    saved = {k: sys.modules.get(k) for k in ("facenet_pytorch", "facenet_pytorch.models")}
    try:
        for name, path in (("facenet_pytorch", root), ("facenet_pytorch.models", root / "models")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
        name = "facenet_pytorch.models.inception_resnet_v1"
        module_spec = importlib.util.spec_from_file_location(
            name, root / "models" / f"{name.rsplit('.', 1)[-1]}.py"
        )
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def randomised_facenet(seed: int = 0):
    torch.manual_seed(seed)
    net = facenet_model_module().InceptionResnetV1(pretrained=None).eval()
    with torch.no_grad():
        for name, buf in net.state_dict().items():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean") or (name.endswith(".bias") and buf.ndim == 1):
                buf.normal_(0.0, 0.1)
            elif name.endswith(".weight") and buf.ndim == 1:  # BN gamma (> 0: foldable)
                buf.uniform_(0.7, 1.3)
    return net


def test_converted_facenet_gives_the_torch_embeddings():
    net = randomised_facenet()
    rng = np.random.default_rng(0)
    ours_in = rng.uniform(-1, 1, (2, 80, 80, 3)).astype(np.float32)  # (p - 127.5) / 127.5
    theirs_in = torch.from_numpy(ours_in.transpose(0, 3, 1, 2) * facenet.PIXEL_SCALE_FIX)
    with torch.no_grad():
        expected = net(theirs_in).numpy()
    variables = facenet.convert_state_dict(net.state_dict(), embedding_size=512)
    backbone = models.BACKBONES["inception_resnet_v1"](embedding_size=512, conv_impl="xla")
    _, extra = jax.jit(lambda v, x: backbone.apply(v, x, train=False))(variables, ours_in)
    np.testing.assert_allclose(np.asarray(extra["embedding"]), expected, atol=1e-4, rtol=0)


def test_negative_gamma_and_foreign_keys_are_refused():
    state = {k: v.numpy() for k, v in randomised_facenet().state_dict().items()}
    bad = dict(state, **{"conv2d_1a.bn.weight": -state["conv2d_1a.bn.weight"]})
    with pytest.raises(ValueError, match="conv2d_1a.bn.weight: a BatchNorm gamma <= 0"):
        facenet.convert_state_dict(bad)
    with pytest.raises(ValueError, match="no place in inception_resnet_v1: \\['extra.weight'\\]"):
        facenet.convert_state_dict(dict(state, **{"extra.weight": np.zeros(3)}))
