"""RoR-3 (pre-activation bottlenecks, three shortcut levels) at 64 px.

    python -m agr_jax.train --config configs/utkface_ror.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_ror
    python -m agr_jax.evaluate --workdir runs/utkface_ror --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("ror", image_size=64, batch_size=128, width=32, stage_sizes=(2, 2, 2, 2))
    c.name = "utkface_ror"
    return c
