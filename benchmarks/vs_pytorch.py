"""PyTorch side of `vs_pytorch`: one eager training step of the reference twin, timed in windows.

Same input size, batch, losses and optimiser (Adam + global-norm clipping, as the agr_jax
benchmark step) on the same cores. PyTorch runs channels-last, its faster CPU layout here;
against our bfloat16 steps it runs the forward pass under bfloat16 autocast (its own mixed
precision: weights and optimiser in float32, as ours).

`TorchStepProcess` runs the twin in a child process of its own (`python -m
benchmarks.vs_pytorch SPEC`, windows requested over a pipe), so each framework runs with its
own process settings (an earlier single-arena malloc setting of ours made PyTorch's eager
steps 2x slower when the two shared a process), and neither side's threads or heap linger
in the other's windows. Both sides run with the same glibc malloc settings
(`agr_jax/host_memory.py`); the OpenMP wait policy agr_jax sets for its oneDNN calls is not
passed on (PyTorch is faster with libgomp's default).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from agr_jax.bench import isolate
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


class TorchStepProcess:
    """`TorchStep` in a child process: the same `time_window`, timed inside the child."""

    def __init__(self, name: str, image_size: int, batch: int, model_kwargs: dict[str, Any],
                 autocast_bf16: bool = False):
        spec = {"name": name, "image_size": image_size, "batch": batch,
                "model_kwargs": model_kwargs, "autocast_bf16": autocast_bf16}
        root = str(Path(__file__).resolve().parents[1])
        env = isolate.child_env(root)
        onednn = sys.modules.get("agr_jax.models.onednn_conv")
        if onednn is not None and onednn.omp_wait_policy_set_here:
            # Ours, for oneDNN beside XLA's threads. PyTorch's eager step runs faster with
            # libgomp's default (ResNet-18: 404-455 vs 475-545 ms with PASSIVE, 2026-12-02).
            env.pop("OMP_WAIT_POLICY")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.vs_pytorch", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root, env=env)
        self.version = self._reply("ready")

    def _reply(self, expected: str) -> str:
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != expected:
            code = self.proc.poll()
            raise RuntimeError(f"PyTorch twin process: expected '{expected} ...', got {line} "
                               f"(exit code {code}; its stderr is above)")
        return line[1]

    def time_window(self, steps: int) -> float:
        self.proc.stdin.write(f"{int(steps)}\n")
        self.proc.stdin.flush()
        return float(self._reply("seconds"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)

    def __enter__(self) -> TorchStepProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(spec: dict[str, Any]) -> None:
    """The child's loop: one window per line of stdin (a step count), seconds back.

    glibc gets the malloc settings our side runs with (`host_memory`, unless
    `AGR_JAX_HOST_MALLOC=default`): PyTorch's eager buffers come from the main thread's
    arena, so they stop its page faults too (ResNet-18: ~20,000 per step -> 0).
    """
    from agr_jax import host_memory

    if host_memory.setting() == "reuse":
        host_memory.apply_malloc_settings()
    step = TorchStep(spec["name"], spec["image_size"], spec["batch"], spec["model_kwargs"],
                     autocast_bf16=spec["autocast_bf16"])
    print("ready", torch_version(), flush=True)
    for line in sys.stdin:
        print("seconds", repr(step.time_window(int(line))), flush=True)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
