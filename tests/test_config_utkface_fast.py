"""The fast release's recipe: the real-data recipe with only the model and its input changed;
valid, and its RoR builds at 64 px."""

from pathlib import Path

import jax
import jax.numpy as jnp

from agr_jax import configuration, models, tasks

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_fast_recipe_is_the_cpu_recipe_with_a_small_ror_at_64_px():
    fast = configuration.load_config_file(CONFIGS / "utkface_fast.py")
    recipe = configuration.load_config_file(CONFIGS / "utkface_cpu.py")
    configuration.validate(fast)
    assert fast.name == "utkface_fast" and fast.data.image_size == 64
    assert fast.data.augment.pad_crop == 5 and fast.model.conv_impl == recipe.model.conv_impl
    assert dict(fast.model) == {"name": "ror", "width": 16, "stage_sizes": (2, 2, 2, 2),
                                "head_hidden": (128,), "pooling": "avg", "dropout": 0.1,
                                "conv_impl": recipe.model.conv_impl}
    same = ("tasks", "optimizer", "batch_size", "num_epochs", "eval_checkpoint",
            "eval_flip_tta", "eval_shift_tta", "cpu_devices")
    assert all(fast[k] == recipe[k] for k in same)
    rest = {k: v for k, v in fast.data.to_dict().items() if k not in ("image_size", "augment")}
    assert rest == {k: recipe.data.to_dict()[k] for k in rest}

    spec = tasks.TaskSpec.from_config(fast.tasks)
    model = models.build_from_config(fast.model, spec.output_sizes(), **spec.model_options())
    x = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out, _ = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert out["age"].shape == (2, 1) and out["race"].shape == (2, 5)


def test_distilled_recipe_is_the_fast_recipe_taught_by_the_default_release():
    distilled = configuration.load_config_file(CONFIGS / "utkface_fast_distilled.py")
    fast = configuration.load_config_file(CONFIGS / "utkface_fast.py")
    configuration.validate(distilled)
    assert distilled.distill.teacher == "agr_jax/released" and not fast.distill.teacher
    assert (Path(__file__).resolve().parents[1] / distilled.distill.teacher / "model.json").exists()
    changed = {k for k in fast.to_dict() if distilled.to_dict()[k] != fast.to_dict()[k]}
    assert changed == {"name", "distill", "num_epochs"}
    assert distilled.tasks.age_balance == "none"  # the shipped recipe (docs/results.md)
