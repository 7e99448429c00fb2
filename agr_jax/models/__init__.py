"""Model registry: `build(name, ...)` -> a `MultiTaskModel` (backbone + shared heads).

Each backbone lives in its own module and registers a constructor here. Constructors take
`dtype`, `param_dtype`, `bn_axis_name` plus their own keyword options from `config.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from agr_jax.models.heads import MultiTaskHead, MultiTaskModel
from agr_jax.models.inception_resnet_v1 import InceptionResNetV1
from agr_jax.models.inception_v3 import InceptionV3
from agr_jax.models.layers import to_dtype
from agr_jax.models.mobilenet import MobileNet
from agr_jax.models.mobilenet_transformer import MobileNetTransformer
from agr_jax.models.resblock_cnn import ResBlockCNN
from agr_jax.models.resnet import ResNet18, ResNet34, ResNet50
from agr_jax.models.ror import RoR
from agr_jax.models.shallow import ShallowLRN
from agr_jax.models.vgg import VGG19
from agr_jax.models.xception import Xception

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "ror": RoR,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "xception": Xception,
    "inception_resnet_v1": InceptionResNetV1,
    "inception_v3": InceptionV3,
    "mobilenet": MobileNet,
    "vgg19": VGG19,
    "mobilenet_transformer": MobileNetTransformer,
    "shallow_lrn": ShallowLRN,
    "resblock_cnn": ResBlockCNN,
}

HEAD_KEYS = ("head_hidden", "pooling", "dropout", "alpha_dropout_tasks")


def available() -> list[str]:
    return sorted(BACKBONES)


def build(
    name: str,
    *,
    outputs: Mapping[str, int],
    dtype: Any = "float32",
    param_dtype: Any = "float32",
    bn_axis_name: str | None = None,
    head_hidden: tuple[int, ...] = (128, 128),
    pooling: str = "max",
    dropout: float = 0.0,
    alpha_dropout_tasks: tuple[str, ...] = (),
    rank_consistent_tasks: tuple[str, ...] = (),
    learned_loss_weights: tuple[str, ...] = (),
    **backbone_kwargs: Any,
) -> MultiTaskModel:
    """Build backbone `name` under multi-task heads with `outputs` (task -> logits width).

    `rank_consistent_tasks` get CORAL ordinal output layers and `learned_loss_weights` adds a
    trainable log-variance per task (both normally from `TaskSpec.model_options()`).
    """
    if name not in BACKBONES:
        raise ValueError(f"model.name: unknown backbone {name!r}; expected one of {available()}")
    dtype, param_dtype = to_dtype(dtype), to_dtype(param_dtype)
    backbone = BACKBONES[name](
        dtype=dtype, param_dtype=param_dtype, bn_axis_name=bn_axis_name, **backbone_kwargs
    )
    head = MultiTaskHead(
        outputs=dict(outputs),
        hidden=tuple(head_hidden),
        pooling=pooling,
        dropout=dropout,
        alpha_dropout_tasks=tuple(alpha_dropout_tasks),
        rank_consistent_tasks=tuple(rank_consistent_tasks),
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return MultiTaskModel(
        backbone=backbone, head=head, learned_loss_weights=tuple(learned_loss_weights)
    )


def build_from_config(model_config: Mapping[str, Any], outputs: Mapping[str, int], **kw: Any):
    """`config.model` (name + options) -> model. Extra keywords (dtypes, axis name) win."""
    cfg = dict(model_config)
    name = cfg.pop("name")
    cfg.update(kw)
    return build(name, outputs=outputs, **cfg)
