"""Conv blocks then residual blocks (BN, dropout); per-task Linear-ReLU-Dropout branches,
the age branch with alpha dropout. 128 px.

    python -m agr_jax.train --config configs/utkface_resblock_cnn.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_resblock_cnn
    python -m agr_jax.evaluate --workdir runs/utkface_resblock_cnn --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("resblock_cnn", image_size=128, batch_size=64)
    c.name = "utkface_resblock_cnn"
    c.model.head_hidden = (256,)
    c.model.dropout = 0.3
    c.model.alpha_dropout_tasks = ("age",)
    return c
