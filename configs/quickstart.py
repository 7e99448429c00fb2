"""Quickstart: a small RoR on the synthetic UTKFace-format set; the `make demo` run.

    python -m agr_jax.train --config configs/quickstart.py --workdir runs/quickstart
    python -m agr_jax.evaluate --workdir runs/quickstart --split test

No download: with `data.dir` unset, 4,000 synthetic faces are generated under the workdir.
Expected on 2 CPU cores: a few minutes; test gender and race accuracy >= 0.90 and age MAE
well under a third of the predict-the-mean baseline.
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.name = "quickstart"
    c.seed = 0

    c.data = config_dict.ConfigDict()
    c.data.name = "utkface"
    c.data.dir = config_dict.placeholder(str)  # unset -> synthetic set under the workdir
    c.data.tfds_dir = config_dict.placeholder(str)  # unset -> <workdir>/tfds
    c.data.synthetic_num = 4000
    c.data.image_size = 48
    c.data.split_seed = 0
    c.data.split_ratios = (0.8, 0.1, 0.1)
    c.data.min_age = -1  # -1: no age filter
    c.data.max_age = -1
    c.data.worker_count = 0
    c.data.augment = config_dict.ConfigDict(dict(flip=True, rotate_deg=8.0, noise_std=0.02))

    c.model = config_dict.ConfigDict()
    c.model.name = "ror"
    c.model.width = 8
    c.model.stage_sizes = (1, 1, 1, 1)
    c.model.head_hidden = (128, 128)
    c.model.pooling = "max"
    c.model.dropout = 0.0

    c.tasks = config_dict.ConfigDict()
    c.tasks.age_mode = "regression"
    c.tasks.max_age = 116.0
    c.tasks.weights = config_dict.ConfigDict(dict(age=10.0, gender=1.0, race=1.0))

    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_epochs = 8
    c.total_steps = 0  # > 0 overrides num_epochs
    c.dtype = "float32"
    c.param_dtype = "float32"
    c.parallel = "shard_map"  # "pmap" or "none" (one device); see train/parallel.py

    c.optimizer = config_dict.ConfigDict()
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 50
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.9
    c.optimizer.grad_clip = 1.0

    c.log_every_steps = 20
    c.checkpoint_every_steps = 0  # 0: at the end of every epoch
    c.prefetch = 2
    return c
