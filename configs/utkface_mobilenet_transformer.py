"""MobileNet features -> 2-layer transformer encoder over the 7x7 tokens -> max pool, 224 px.

    python -m agr_jax.train --config configs/utkface_mobilenet_transformer.py \
        --config.data.dir=/path/to/UTKFace --workdir runs/utkface_mobilenet_transformer
    python -m agr_jax.evaluate --workdir runs/utkface_mobilenet_transformer --split test

Expected result: not yet measured (a reference config for the model zoo; see docs/training.md).
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config(
        "mobilenet_transformer",
        image_size=224,
        batch_size=64,
        alpha=1.0,
        d_model=256,
        num_layers=2,
        num_heads=4,
        mlp_dim=512,
    )
    c.name = "utkface_mobilenet_transformer"
    return c
