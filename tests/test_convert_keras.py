"""Keras importer parity: Keras 3 application models with random weights (BN moving statistics
included), saved in both file layouts, converted, give the same backbone features.

Keras runs on whichever backend is loaded (numpy by default here, as in test_keras_parity:
it builds the models in about a second; the forward pass is Keras' own reference code).
Random weights are scaled per fan-in so activations stay O(1) and 1e-4 is a real bound.
"""

import os

import h5py
import jax
import numpy as np
import pytest

from agr_jax import models
from agr_jax.convert import keras as keras_convert

os.environ.setdefault("KERAS_BACKEND", "numpy")
keras = pytest.importorskip("keras", reason="pip install 'keras>=3.0'")
legacy_h5 = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format",
                                reason="Keras 3's legacy H5 reader: pip install 'keras>=3.0'")

# backbone -> (Keras application, input size, file layouts checked)
CASES = {
    "mobilenet": ("MobileNet", 32, ("keras3", "legacy")),
    "vgg19": ("VGG19", 32, ("keras3", "legacy")),
    "resnet50": ("ResNet50", 32, ("keras3",)),
    "xception": ("Xception", 71, ("legacy",)),
    "inception_v3": ("InceptionV3", 75, ("keras3",)),
}
HEAVY = ("resnet50", "xception", "inception_v3")


def randomise(model, rng: np.random.Generator) -> None:
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in w.path:
            value = rng.uniform(0.8, 1.2, shape)
        elif len(shape) > 1:  # kernels: unit gain per fan-in
            fan_in = int(np.prod(shape[:-1])) if "depthwise" not in w.path else shape[0] * shape[1]
            value = rng.normal(0.0, (1.0 / fan_in) ** 0.5, shape)
        else:  # biases, beta, moving_mean
            value = rng.normal(0.0, 0.1, shape)
        w.assign(value.astype("float32"))


def save(model, path, layout: str) -> str:
    if layout == "keras3":
        path = f"{path}.weights.h5"
        model.save_weights(path)
    else:
        path = f"{path}.h5"
        with h5py.File(path, "w") as f:
            legacy_h5.save_weights_to_hdf5_group(f, model)
    return path


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in CASES]
)
def test_converted_keras_weights_give_keras_features(name, tmp_path):
    app, size, layouts = CASES[name]
    keras_model = getattr(keras.applications, app)(
        include_top=False, weights=None, input_shape=(size, size, 3)
    )
    rng = np.random.default_rng(0)
    randomise(keras_model, rng)
    images = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(keras_model(images))
    backbone = models.BACKBONES[name](conv_impl="xla")
    forward = jax.jit(lambda v, x: backbone.apply(v, x, train=False))
    for layout in layouts:
        variables = keras_convert.convert(name, save(keras_model, tmp_path / name, layout))
        got = np.asarray(forward(variables, images))
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale, err_msg=layout)


def test_wrong_backbone_file_is_refused_with_the_layer_counts(tmp_path):
    keras_model = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = save(keras_model, tmp_path / "mobilenet", "legacy")
    with pytest.raises(ValueError, match="vgg19 has 16"):
        keras_convert.convert("vgg19", path)
