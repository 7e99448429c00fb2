"""PyTorch side of `vs_pytorch`: one eager training step of the reference twin, timed in windows.

Same input size, batch, losses and optimiser (Adam + global-norm clipping, as the agr_jax
benchmark step) on the same cores. PyTorch runs channels-last, its faster CPU layout here;
against our bfloat16 steps it runs the forward pass under bfloat16 autocast (its own mixed
precision: weights and optimiser in float32, as ours).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from benchmarks import torch_reference


class TorchStep:
    """A ready-to-time PyTorch training step on one fixed random batch."""

    def __init__(self, name: str, image_size: int, batch: int, model_kwargs: dict[str, Any],
                 lr: float = 1e-3, grad_clip: float = 1.0, channels_last: bool = True,
                 seed: int = 0, autocast_bf16: bool = False):
        torch.manual_seed(seed)
        torch.set_num_threads(os.cpu_count() or 1)
        self.model = torch_reference.build(name, **model_kwargs)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.grad_clip = grad_clip
        self.x = torch.rand(batch, 3, image_size, image_size).to(memory_format=fmt)
        self.age = torch.rand(batch) * 100
        self.gender = torch.randint(0, 2, (batch,))
        self.race = torch.randint(0, 5, (batch,))
        self.batch = batch
        self.autocast_bf16 = autocast_bf16  # forward + loss in bfloat16, as ours with dtype=bf16

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast_bf16):
            outputs = self.model(self.x)
        loss = torch_reference.multitask_loss({k: v.float() for k, v in outputs.items()},
                                              self.age, self.gender, self.race)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return loss.item()

    def time_window(self, steps: int) -> float:
        """Seconds for `steps` steps (eager: each step finishes before the next starts).

        Denormals appear as the weights train and slow eager CPU kernels many-fold; XLA
        flushes them, so PyTorch does too while it is timed (the fair, faster setting). The
        flag is processor state of the calling thread, so it is switched off again after:
        left on, it breaks code that relies on IEEE subnormals (hypothesis refuses to run).
        """
        torch.set_flush_denormal(True)
        try:
            start = time.perf_counter()
            for _ in range(steps):
                self.step()
            return time.perf_counter() - start
        finally:
            torch.set_flush_denormal(False)


def torch_version() -> str:
    return torch.__version__
