"""Model registry: `build(name, ...)` -> a `MultiTaskModel` (backbone + shared heads).

Each backbone lives in its own module and registers a constructor here. Constructors take
`dtype`, `param_dtype`, `bn_axis_name` plus their own keyword options from `config.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from agr_jax.models.heads import MultiTaskHead, MultiTaskModel
from agr_jax.models.layers import to_dtype
from agr_jax.models.ror import RoR

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "ror": RoR,
}

HEAD_KEYS = ("head_hidden", "pooling", "dropout")


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
    **backbone_kwargs: Any,
) -> MultiTaskModel:
    """Build backbone `name` under multi-task heads with `outputs` (task -> logits width)."""
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
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return MultiTaskModel(backbone=backbone, head=head)


def build_from_config(model_config: Mapping[str, Any], outputs: Mapping[str, int], **kw: Any):
    """`config.model` (name + options) -> model. Extra keywords (dtypes, axis name) win."""
    cfg = dict(model_config)
    name = cfg.pop("name")
    cfg.update(kw)
    return build(name, outputs=outputs, **cfg)
