"""The five Keras-layout backbones match `keras.applications` (include_top=False) layer for layer.

Each Keras layer's weight shapes (BatchNorm: gamma, beta, moving mean and variance) must equal
those of one Flax layer (params + batch_stats), as a multiset of layers, and the totals must be
equal. Keras runs on its NumPy backend: the shapes are backend-independent and building the
models there takes about a second instead of ~50 s of per-layer JAX tracing.
"""

import math
import os
from collections import Counter

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from agr_jax import models
from agr_jax.models.layers import SeparableConv

os.environ.setdefault("KERAS_BACKEND", "numpy")
keras = pytest.importorskip("keras", reason="pip install 'keras>=3.0'")

# Flax backbone -> (Keras application, smallest input size it accepts).
KERAS = {
    "resnet50": ("ResNet50", 32),
    "vgg19": ("VGG19", 32),
    "mobilenet": ("MobileNet", 32),
    "xception": ("Xception", 71),
    "inception_v3": ("InceptionV3", 75),
}


def keras_layers(model) -> list[tuple[tuple[int, ...], ...]]:
    layers = []
    for layer in model.layers:
        shapes = []
        for w in layer.weights:
            shape = tuple(w.shape)
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D) or "depthwise" in w.path
            if depthwise and len(shape) == 4 and "pointwise" not in w.path:
                # Keras depthwise kernel (kh, kw, C, m) is Flax's grouped (kh, kw, 1, C * m).
                shape = (shape[0], shape[1], 1, shape[2] * shape[3])
            shapes.append(shape)
        if shapes:
            layers.append(tuple(sorted(shapes)))
    return layers


def flax_layers(backbone: nn.Module, size: int) -> list[tuple[tuple[int, ...], ...]]:
    """Per-layer weight shapes; a SeparableConv's two convs form one layer, as in Keras."""
    variables = jax.eval_shape(
        lambda: backbone.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    separable: set[tuple[str, ...]] = set()

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, SeparableConv):
            separable.add(tuple(context.module.path))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v: backbone.apply(v, jnp.zeros((1, size, size, 3))), variables)

    groups: dict[tuple[str, ...], list[tuple[int, ...]]] = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]:
            layer = tuple(p.key for p in path[:-1])
            if layer[:-1] in separable:
                layer = layer[:-1]
            groups.setdefault(layer, []).append(tuple(leaf.shape))
    return [tuple(sorted(shapes)) for shapes in groups.values()]


@pytest.mark.parametrize("name", sorted(KERAS))
def test_layer_for_layer_parameter_shapes_match_keras(name):
    app, size = KERAS[name]
    keras_model = getattr(keras.applications, app)(
        include_top=False, weights=None, input_shape=(size, size, 3)
    )
    ours = flax_layers(models.BACKBONES[name](), size)
    theirs = keras_layers(keras_model)
    count = lambda layers: sum(math.prod(s) for layer in layers for s in layer)
    assert count(ours) == keras_model.count_params() == count(theirs)
    assert len(ours) == len(theirs)
    missing, extra = Counter(theirs) - Counter(ours), Counter(ours) - Counter(theirs)
    assert not missing and not extra, f"keras-only layers {missing}; flax-only layers {extra}"
