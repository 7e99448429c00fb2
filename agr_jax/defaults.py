"""Every config key with its default: the base all `configs/*.py` derive from.

It is also the schema `configuration.validate` checks keys and types against, so a new key
belongs here with its default (or, for keys without a natural default, in
`configuration.OPTIONAL_KEYS`). Living in the package, it works wherever a config file is.
"""

from typing import Any

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.name = "default"
    c.seed = 0

    c.data = config_dict.ConfigDict()
    c.data.name = "utkface"  # utkface | fairface | imdb_wiki
    c.data.dir = config_dict.placeholder(str)  # unset -> synthetic set under the workdir
    c.data.tfds_dir = config_dict.placeholder(str)  # unset -> <workdir>/tfds
    c.data.synthetic_num = 4000
    c.data.image_size = 64
    c.data.split_seed = 0
    c.data.split_ratios = (0.8, 0.1, 0.1)
    c.data.folds = 0  # k-fold protocol: > 1 folds, `fold` held out as the test split
    c.data.fold = 0
    c.data.min_age = -1  # -1: no age filter
    c.data.max_age = -1
    c.data.worker_count = 0
    # Training and validation splits are decoded once at image_size into a memory-mapped
    # file beside the prepared build when they fit in this many GB (data/decoded_cache.py);
    # 0 decodes every JPEG every epoch.
    c.data.decoded_cache_gb = 4.0
    c.data.augment = config_dict.ConfigDict(
        dict(flip=True, rotate_deg=0.0, pad_crop=0, noise_std=0.0)
    )
    # Where flip and pad-crop run: "auto" = inside the train step unless rotation or noise
    # is asked for (then all on the host), "host", or "device" (data/pipeline.py AUGMENT_ON).
    c.data.augment_on = "auto"
    # Where the decoded train and validation splits live (train/device_data.py): "host"
    # (the grain pipeline sends pixels every step), "device" (copied to every device once;
    # steps receive row numbers and flip/crop draws; same batches), or "auto": "device" on
    # GPU/TPU when both splits fit in a quarter of one device's memory, else "host".
    c.data.placement = "auto"

    c.model = config_dict.ConfigDict()
    c.model.name = "ror"
    c.model.head_hidden = (128, 128)
    c.model.pooling = "max"
    c.model.dropout = 0.0
    # CPU convolutions (models/conv.py): "auto" = oneDNN through the FFI where it builds, else
    # "matmul" (XLA's conv with its slowest cases as matmuls); "onednn"; "xla": XLA's alone.
    c.model.conv_impl = "auto"
    # Every convolution's output channels rounded up to a multiple of this (tensor-core /
    # MXU tiles: 8 or 64 on GPU, 128 on TPU); 1 keeps the recipe widths.
    c.model.channel_multiple = 1

    c.tasks = config_dict.ConfigDict()
    c.tasks.age_mode = "regression"  # or "bins" / "ordinal" (then set tasks.age_bins)
    # Age-bin preset ("utkface9", "5year", "intervals4", "fairface9") or K+1 edges in years.
    c.tasks.age_bins = config_dict.placeholder(object)
    c.tasks.max_age = 116.0
    c.tasks.age_loss = "mse"  # regression mode: "mse" or "l1" on age/max_age
    c.tasks.weights = config_dict.ConfigDict(dict(age=1.0, gender=1.0, race=1.0))
    c.tasks.label_smoothing = 0.0  # gender and race targets: (1 - e) one-hot + e / classes
    c.tasks.weighting = "fixed"  # or "learned" (uncertainty weighting, trainable s_t)
    # Age loss per face x a weight of its age (train/age_balance.py): "none", "sqrt_inv" (label
    # distribution smoothing: 1 / sqrt of the Gaussian-smoothed age frequency) or "inv".
    c.tasks.age_balance = "none"
    c.tasks.age_balance_sigma = 2.0  # smoothing kernel width in years
    c.tasks.age_balance_cap = 5.0  # largest weight (weights average 1 over the training faces)

    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_epochs = 10
    c.total_steps = 0  # > 0 overrides num_epochs
    c.dtype = "float32"
    c.param_dtype = "float32"
    c.parallel = "shard_map"  # "pmap", or "none" (one device): see train/parallel.py
    c.cpu_devices = 0  # > 0: split a CPU host into this many XLA devices (one per core)
    c.eval_flip_tta = False  # evaluate: average outputs on each face and its mirror
    c.eval_shift_tta = 0  # evaluate: > 0 also averages crops shifted by +-N px (3x3 grid)
    # evaluate's default checkpoint: "best" (lowest validation loss) or "latest" (the last
    # saved: the end of a finished run, e.g. the end of a one-cycle schedule).
    c.eval_checkpoint = "best"
    c.skip_nonfinite = False  # True: skip (and count) steps with a NaN/Inf loss or gradient

    c.optimizer = config_dict.ConfigDict()
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 0
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.9
    c.optimizer.grad_clip = 0.0
    # > 0: keep an exponential moving average of params and BN statistics with this decay;
    # validation, best-checkpoint choice and evaluation then use the average.
    c.optimizer.ema_decay = 0.0
    c.optimizer.lr_multipliers = ()  # ((glob over param paths, multiplier), ...); 0 freezes

    # Distillation (train/distill.py): off while `teacher` is unset.
    c.distill = config_dict.ConfigDict()
    c.distill.teacher = config_dict.placeholder(str)  # a release folder or a training workdir
    c.distill.teacher_checkpoint = ""  # a workdir's "best"/"latest" ("": its eval_checkpoint)
    # Views the teacher scores once per training crop, (dy, dx) in the student's pixels, each
    # also mirrored; training draws among them instead of a free pad-crop.
    c.distill.shifts = ((0, 0), (-4, 0), (4, 0), (0, -4), (0, 4))
    c.distill.alpha = 0.7  # gender and race: share of the loss from the teacher
    c.distill.age_alpha = 0.5  # age: share of the loss from the teacher's age
    c.distill.temperature = 2.0  # softens both sides of the KL (Hinton et al. 2015)
    c.distill.batch_size = 128  # the teacher pass
    c.distill.cache_dir = ""  # "": teacher_cache/ in the prepared dataset's folder

    # Start from saved weights (train/init_weights.py): an Orbax tree written by one of
    # the importers (agr_jax/convert/, docs/pretrained.md); unset = the seed's initialisation.
    c.init = config_dict.ConfigDict()
    c.init.checkpoint = config_dict.placeholder(str)
    c.init.strict = True  # shape mismatches / unknown leaves: error (False: skip and log them)
    # Fine-tuning phases ((epochs, ((glob, multiplier), ...)), ...) (train/phases.py), e.g.
    # heads only, then all; on top of optimizer.lr_multipliers; 0 freezes params and BN stats.
    c.init.phases = ()
    # > 0 (with init.checkpoint): re-measure every BatchNorm's statistics on this many training
    # images, keeping the inference-mode function (train/bn_recalibration.py); needed for
    # graphs whose BatchNorm was folded (TF.js, faceres), AdaBN for other domains' weights.
    c.init.recalibrate_bn_images = 0

    c.log_every_steps = 50
    c.checkpoint_every_steps = 0  # 0: at the end of every epoch
    c.prefetch = 2
    # Train steps per jitted call (a lax.scan over K batches, train/multi_step.py); calls end
    # at epoch ends and checkpoints. 1: one step per call.
    c.steps_per_call = 1
    return c


def zoo_config(
    backbone: str, image_size: int, batch_size: int = 64, **model_options: Any
) -> config_dict.ConfigDict:
    """UTKFace training of `backbone` at its reference `image_size` under the shared heads
    (the model-zoo configs `configs/utkface_<backbone>.py` are this plus their options)."""
    c = get_config()
    c.name = f"utkface_{backbone}"
    c.data.image_size = image_size
    c.data.augment.update(flip=True, rotate_deg=8.0, noise_std=0.02)
    c.model.name = backbone
    c.model.update(model_options)
    c.tasks.weights.age = 10.0  # MSE on age/116 is small beside the cross-entropies
    c.batch_size = batch_size
    c.eval_batch_size = 2 * batch_size
    c.num_epochs = 30
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 500
    c.optimizer.grad_clip = 1.0
    return c
