"""VGG-19, Keras `applications.VGG19` layout, at 224 px.

    python -m agr_jax.train --config configs/utkface_vgg19.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_vgg19
    python -m agr_jax.evaluate --workdir runs/utkface_vgg19 --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("vgg19", image_size=224, batch_size=32)
    c.name = "utkface_vgg19"
    return c
