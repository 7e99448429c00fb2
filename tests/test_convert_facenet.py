"""facenet importer parity without torch: facenet-pytorch's InceptionResnetV1 with random
weights (BN statistics and gammas included) and the converted agr_jax model give the same
embeddings. The torch side is committed (tests/data/facenet_reference.npz, written by
`python -m benchmarks.facenet_reference`): the state-dict layout, input pixels and torch's
embeddings; the weights are redrawn here from the same numpy seed."""

from pathlib import Path

import jax
import numpy as np
import pytest

from agr_jax import models
from agr_jax.convert import facenet
from benchmarks.facenet_reference import random_state_dict, read_layout

REFERENCE = Path(__file__).with_name("data") / "facenet_reference.npz"
TOLERANCE = 1e-4  # embeddings are L2-normalised: entries ~0.04


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def state(reference) -> dict[str, np.ndarray]:
    layout = read_layout(reference)
    drawn = random_state_dict(layout)
    sums = np.asarray([np.sum(drawn[name], dtype=np.float64) for name, _, _ in layout])
    np.testing.assert_allclose(sums, reference["sums"], rtol=1e-9, atol=1e-9, err_msg=(
        "numpy drew other weights than when the reference was written: rerun "
        "`python -m benchmarks.facenet_reference` (needs torch and facenet-pytorch)"))
    return drawn


def test_converted_facenet_gives_the_torch_embeddings(reference, state, capsys):
    inputs = (reference["pixels"].astype(np.float32) - 127.5) / 127.5
    variables = facenet.convert_state_dict(state, embedding_size=512)
    backbone = models.BACKBONES["inception_resnet_v1"](embedding_size=512, conv_impl="xla")
    _, extra = jax.jit(lambda v, x: backbone.apply(v, x, train=False))(variables, inputs)
    got = np.asarray(extra["embedding"])
    diff = float(np.abs(got - reference["embeddings"]).max())
    with capsys.disabled():
        print(f"\n[facenet importer parity] max |embedding diff| {diff:.2g}")
    assert got.shape == reference["embeddings"].shape
    assert diff <= TOLERANCE, diff


def test_negative_gamma_and_foreign_keys_are_refused(state):
    bad = dict(state, **{"conv2d_1a.bn.weight": -state["conv2d_1a.bn.weight"]})
    with pytest.raises(ValueError, match="conv2d_1a.bn.weight: a BatchNorm gamma <= 0"):
        facenet.convert_state_dict(bad)
    with pytest.raises(ValueError, match="no place in inception_resnet_v1: \\['extra.weight'\\]"):
        facenet.convert_state_dict(dict(state, **{"extra.weight": np.zeros(3)}))
