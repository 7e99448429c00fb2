"""Quickstart: a small RoR on the synthetic UTKFace-format set; the `make demo` run.

    python -m agr_jax.train --config configs/quickstart.py --workdir runs/quickstart
    python -m agr_jax.evaluate --workdir runs/quickstart --split test

No download: with `data.dir` unset, 4,000 synthetic faces are generated under the workdir.
Expected on 2 CPU cores: about a minute of training; test gender and race accuracy >= 0.90
and age MAE well under a third of the predict-the-mean baseline (measured: 1.00, 1.00,
1.9 vs 14.8 years).
"""

from agr_jax.defaults import get_config as base_config


def get_config():
    c = base_config()
    c.name = "quickstart"
    c.data.image_size = 48
    c.data.augment.update(flip=True, rotate_deg=8.0, noise_std=0.02)
    c.model.width = 8
    c.model.stage_sizes = (1, 1, 1, 1)
    c.tasks.weights.age = 10.0  # MSE on age/116 is small beside the cross-entropies
    c.num_epochs = 8
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 50
    c.optimizer.grad_clip = 1.0
    c.log_every_steps = 20
    return c
