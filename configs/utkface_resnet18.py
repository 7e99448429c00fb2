"""ResNet-18 (basic blocks) at 224 px.

    python -m agr_jax.train --config configs/utkface_resnet18.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_resnet18
    python -m agr_jax.evaluate --workdir runs/utkface_resnet18 --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("resnet18", image_size=224, batch_size=64)
    c.name = "utkface_resnet18"
    return c
