"""The real-data recipe config: valid, builds, and its model fits the timing budget."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp


def _config():
    path = Path(__file__).resolve().parents[1] / "configs" / "utkface_cpu.py"
    spec = importlib.util.spec_from_file_location("utkface_cpu_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_recipe_validates_and_builds():
    from agr_jax import configuration, models, tasks

    config = _config()
    configuration.validate(config)
    assert config.eval_flip_tta and config.data.dir.endswith("utkface")
    assert config.eval_checkpoint == "latest"  # the end of the one-cycle schedule
    assert config.eval_shift_tta == 3  # the +-3 px grid chosen on the validation split
    spec = tasks.TaskSpec.from_config(config.tasks)
    model = models.build_from_config(config.model, spec.output_sizes())
    size = config.data.image_size
    x = jnp.zeros((1, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out, feats = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert out["race"].shape == (1, 5) and out["age"].shape == (1, 1)
    params = sum(a.size for a in jax.tree.leaves(variables["params"]))
    assert 5e6 < params < 8e6  # the budgeted ResNet-18 width 0.75 (6.4 M with the heads)
