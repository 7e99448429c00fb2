"""How far a fine-tuning config's training-mode forward is from its pretrained (inference-mode)
net, before and after `init.recalibrate_bn_images` (train/bn_recalibration.py).

A folded import (TF.js faceres: BatchNorm statistics 0 / 1) runs a different net in training
mode; this measures by how much, on the config's own training images and input size:

    nice python -m benchmarks.bn_recalibration_check --config configs/utkface_faceres.py \
        --workdir runs/faceres_bn_s0

Printed: the relative L2 distance between training-mode and inference-mode pooled features
(`pre_logits`) on one batch (`--batch` crops, each the row after a measured one), before and after
recalibration, and the largest change recalibration makes to the inference-mode features
(should be float rounding).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from agr_jax.configuration import load_config_file
from agr_jax.train import bn_recalibration, init_weights
from agr_jax.train import input as input_lib
from agr_jax.train.loop import build_model_and_spec


def inferred(model, variables, images) -> np.ndarray:
    return np.asarray(model.apply(variables, images, train=False)[1]["pre_logits"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a config with init.checkpoint")
    parser.add_argument("--workdir", required=True, help="where the config's data is prepared")
    parser.add_argument("--images", type=int, default=0,
                        help="images to measure on (default: the config's recalibrate_bn_images)")
    parser.add_argument("--batch", type=int, default=64, help="the batch compared")
    args = parser.parse_args()

    config = load_config_file(Path(args.config))
    count = args.images or int(config.init.recalibrate_bn_images) or 2048
    tfds_dir = input_lib.resolve_tfds_dir(config, args.workdir)
    source = input_lib.load_training_split(config, tfds_dir, "train")
    model, _ = build_model_and_spec(config, tfds_dir)
    size = int(config.data.image_size)
    variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.uint8),
                           train=False)  # fmt: skip
    variables = init_weights.load_into(dict(variables), config.init.checkpoint, True)
    calibration = bn_recalibration.calibration_images(config, source, count)
    measured_rows = bn_recalibration.strided_rows(source, count).rows
    neighbours = bn_recalibration.Rows(source, np.minimum(measured_rows[: args.batch] + 1,
                                                          len(source) - 1))
    batch = jnp.asarray(np.concatenate(
        [b["image"] for b in input_lib.make_eval_batches(config, neighbours)]))
    recalibrated = bn_recalibration.recalibrate(model, variables, calibration)
    result = {
        "config": args.config, "images_measured": count, "batch": int(len(batch)),
        "train_vs_inference_before": bn_recalibration.mode_gap(model, variables, batch),
        "train_vs_inference_after": bn_recalibration.mode_gap(model, recalibrated, batch),
        "inference_change_max_abs": float(np.max(np.abs(
            inferred(model, recalibrated, batch) - inferred(model, variables, batch)))),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
