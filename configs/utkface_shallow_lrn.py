"""Shallow 3-conv CNN with LRN, FC 512/100 + dropout (Levi & Hassner style), 128 px RGB.

The FC layers live in the backbone, so the task heads are single linear layers.

    python -m agr_jax.train --config configs/utkface_shallow_lrn.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_shallow_lrn
    python -m agr_jax.evaluate --workdir runs/utkface_shallow_lrn --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config(
        "shallow_lrn", image_size=128, batch_size=64, grayscale=False, dropout=0.5
    )
    c.name = "utkface_shallow_lrn"
    c.model.head_hidden = ()
    return c
