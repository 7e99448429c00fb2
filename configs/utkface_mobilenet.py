"""MobileNet v1 (alpha 1.0), Keras `applications.MobileNet` layout, at 224 px.

    python -m agr_jax.train --config configs/utkface_mobilenet.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_mobilenet
    python -m agr_jax.evaluate --workdir runs/utkface_mobilenet --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("mobilenet", image_size=224, batch_size=64, alpha=1.0)
    c.name = "utkface_mobilenet"
    return c
