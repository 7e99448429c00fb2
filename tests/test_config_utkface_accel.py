"""The accelerator recipe config: valid, the CPU recipe's training, fed from the device."""

import jax
import jax.numpy as jnp

from agr_jax import configuration, models, tasks
from agr_jax.train import multi_step
from configs import utkface_accel, utkface_cpu

TRAIN_STEPS_PER_EPOCH = 115  # configs/utkface_cpu.py: 30 epochs = 3,450 steps


def test_accel_recipe_validates_and_builds():
    config = utkface_accel.get_config()
    configuration.validate(config)
    assert config.data.placement == "device" and config.dtype == "bfloat16"
    assert config.param_dtype == "float32"
    spec = tasks.TaskSpec.from_config(config.tasks)
    model = models.build_from_config(config.model, spec.output_sizes(), dtype=config.dtype)
    x = jnp.zeros((2, config.data.image_size, config.data.image_size, 3), jnp.uint8)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out, _ = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert out["race"].shape == (2, 5)


def test_only_the_feeding_differs_from_the_cpu_recipe():
    accel, cpu = utkface_accel.get_config().to_dict(), utkface_cpu.get_config().to_dict()
    for key in ("model", "optimizer", "tasks", "batch_size", "num_epochs", "seed"):
        assert accel[key] == cpu[key], key
    assert {k: v for k, v in accel["data"].items() if k not in ("placement", "worker_count")} \
        == {k: v for k, v in cpu["data"].items() if k not in ("placement", "worker_count")}


def test_calls_fill_whole_epochs():
    k = utkface_accel.get_config().steps_per_call
    assert TRAIN_STEPS_PER_EPOCH % k == 0
    sizes = {multi_step.call_size(s, k, (TRAIN_STEPS_PER_EPOCH,), 30 * TRAIN_STEPS_PER_EPOCH)
             for s in range(0, 30 * TRAIN_STEPS_PER_EPOCH, k)}
    assert sizes == {k}  # one compiled call for the whole run
