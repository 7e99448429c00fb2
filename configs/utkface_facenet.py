"""FaceNet trunk (Inception-ResNet-v1) at 160 px; features carry the 128-d embedding.

    python -m agr_jax.train --config configs/utkface_facenet.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_facenet
    python -m agr_jax.evaluate --workdir runs/utkface_facenet --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("inception_resnet_v1", image_size=160, batch_size=64)
    c.name = "utkface_facenet"
    return c
