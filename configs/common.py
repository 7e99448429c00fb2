"""Shared base for the model-zoo configs: the quickstart settings, retargeted at one backbone.

Config files are loaded by path; `from configs import common` works when run from the repo
root (as every documented command is).
"""

from typing import Any

from ml_collections import config_dict

from configs import quickstart


def zoo_config(
    backbone: str, image_size: int, batch_size: int = 64, **model_options: Any
) -> config_dict.ConfigDict:
    """UTKFace training of `backbone` at its reference `image_size` under the shared heads."""
    c = quickstart.get_config()
    c.name = f"utkface_{backbone}"
    c.data.image_size = image_size
    c.model = config_dict.ConfigDict(
        dict(name=backbone, head_hidden=(128, 128), pooling="max", dropout=0.0)
    )
    c.model.update(model_options)
    c.batch_size = batch_size
    c.eval_batch_size = 2 * batch_size
    c.num_epochs = 30
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 500
    return c
