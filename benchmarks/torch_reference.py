"""PyTorch twins of agr_jax models, for side-by-side throughput (`vs_pytorch`); not a dependency.

`RoR` mirrors `agr_jax/models/ror.py` layer for layer (same parameter count, checked in
tests/test_benchmark.py); `ResNet18` is the classic basic-block net (2,2,2,2; 7x7 stride-2 stem +
max-pool) with a configurable width. Both sit under the same multi-task heads as
`agr_jax/models/heads.py` (global max pool -> per task Dense-ReLU stack -> logits) and train
with the same losses as `agr_jax/tasks.py` (sigmoid-age MSE, softmax cross-entropy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

OUTPUTS = {"age": 1, "gender": 2, "race": 5}


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class PreActBottleneck(nn.Module):
    def __init__(self, cin: int, filters: int, stride: int, expansion: int):
        super().__init__()
        out = filters * expansion
        self.bn_in = nn.BatchNorm2d(cin)
        self.proj = _conv(cin, out, 1, stride) if (cin != out or stride != 1) else None
        self.conv1, self.bn2 = _conv(cin, filters, 1), nn.BatchNorm2d(filters)
        self.conv2, self.bn3 = _conv(filters, filters, 3, stride), nn.BatchNorm2d(filters)
        self.conv3 = _conv(filters, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn_in(x))
        shortcut = self.proj(pre) if self.proj is not None else x
        y = F.relu(self.bn2(self.conv1(pre)))
        y = F.relu(self.bn3(self.conv2(y)))
        return self.conv3(y) + shortcut


class RoR(nn.Module):
    """Same stem, stages and three shortcut levels as agr_jax.models.ror.RoR."""

    def __init__(self, stage_sizes: Sequence[int] = (3, 4, 6, 3), width: int = 64,
                 expansion: int = 4):
        super().__init__()
        self.stem = _conv(3, width, 7, 2)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stages, self.stage_shortcuts = nn.ModuleList(), nn.ModuleList()
        cin, total_stride = width, 1
        for i, n in enumerate(stage_sizes):
            filters, stride = width * 2**i, (1 if i == 0 else 2)
            total_stride *= stride
            blocks = []
            stage_in = cin
            for j in range(n):
                blocks.append(PreActBottleneck(cin, filters, stride if j == 0 else 1, expansion))
                cin = filters * expansion
            self.stages.append(nn.Sequential(*blocks))
            self.stage_shortcuts.append(nn.Conv2d(stage_in, cin, 1, stride=stride, bias=False))
        self.network_shortcut = nn.Conv2d(width, cin, 1, stride=total_stride, bias=False)
        self.final_bn = nn.BatchNorm2d(cin)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 3, 2, padding=1)
        network_input = x
        for stage, shortcut in zip(self.stages, self.stage_shortcuts, strict=True):
            x = stage(x) + shortcut(x)
        x = x + self.network_shortcut(network_input)
        return F.relu(self.final_bn(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv(cout, cout, 3), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.down(x) if self.down is not None else x))


class ResNet18(nn.Module):
    """`width` multiplies the channel counts (64, 128, 256, 512), as in agr_jax's registry."""

    def __init__(self, width: float = 1.0, stage_sizes: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        base = max(1, int(64 * width))
        self.stem, self.stem_bn = _conv(3, base, 7, 2), nn.BatchNorm2d(base)
        layers, cin = [], base
        for i, n in enumerate(stage_sizes):
            cout = max(1, int(64 * 2**i * width))
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 3, 2, padding=1)
        return self.blocks(x)


class MultiTaskModel(nn.Module):
    """Backbone -> global max pool -> one Dense-ReLU MLP per task (as agr_jax heads)."""

    def __init__(self, backbone: nn.Module, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()
        for task, n in OUTPUTS.items():
            layers, cin = [], backbone.out_channels
            for units in hidden:
                layers += [nn.Linear(cin, units), nn.ReLU()]
                cin = units
            layers.append(nn.Linear(cin, n))
            self.heads[task] = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = torch.amax(self.backbone(x), dim=(2, 3))
        return {task: head(pooled) for task, head in self.heads.items()}


BACKBONES = {"ror": RoR, "resnet18": ResNet18}


def build(name: str, head_hidden: Sequence[int] = (128, 128), **kwargs) -> MultiTaskModel:
    if name not in BACKBONES:
        raise ValueError(f"no PyTorch reference for {name!r}; have {sorted(BACKBONES)}")
    return MultiTaskModel(BACKBONES[name](**kwargs), hidden=head_hidden)


def multitask_loss(out: dict[str, torch.Tensor], age: torch.Tensor, gender: torch.Tensor,
                   race: torch.Tensor, max_age: float = 116.0) -> torch.Tensor:
    """agr_jax.tasks losses with unit weights: MSE(sigmoid(age), age / max_age) + 2 x CE."""
    age_loss = (torch.sigmoid(out["age"][:, 0]) - age / max_age).square().mean()
    return age_loss + F.cross_entropy(out["gender"], gender) + F.cross_entropy(out["race"], race)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
