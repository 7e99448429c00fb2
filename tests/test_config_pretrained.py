"""The three fine-tuning configs validate, build, and their backbones have exactly the shapes
the importers write, so `init.strict` loads the converted files (heads aside)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from agr_jax import configuration, models, tasks
from agr_jax.configuration import load_config_file
from agr_jax.convert import _tree

# config -> the importer's backbone options (what the converted file holds)
CONFIGS = {
    "utkface_faceres": {"alpha": 1.0, "num_blocks": 13},  # tfjs.mobilenet_options(faceres)
    "xception_imagenet": {},
    "facenet_vggface2": {"embedding_size": 512},
}


def load(name):
    return load_config_file(Path(__file__).resolve().parents[1] / "configs" / f"{name}.py")


def shapes(tree):
    return jax.tree.map(lambda x: tuple(x.shape), tree)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_validates_and_its_backbone_matches_the_converted_tree(name):
    config = load(name)
    configuration.validate(config)
    assert config.init.checkpoint and config.init.strict
    spec = tasks.TaskSpec.from_config(config.tasks)
    model = models.build_from_config(config.model, spec.output_sizes())
    size = config.data.image_size
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    converted = _tree.backbone_variables(config.model.name, size, **CONFIGS[name])
    for collection in ("params", "batch_stats"):
        assert shapes(variables[collection]["backbone"]) == shapes(converted[collection])


def test_facenet_recipe_rates_and_phases():
    config = load("facenet_vggface2")
    assert dict(config.optimizer.lr_multipliers) == {
        "backbone/*": 0.01, "head/gender/*": 0.1, "head/race/*": 0.1,
    }  # fmt: skip
    assert config.init.phases[0][1] == (("backbone/*", 0.0),) and config.init.phases[-1][1] == ()


def test_xception_recipe_is_seed_000s():
    config = load("xception_imagenet")
    assert (config.model.pooling, tuple(config.model.head_hidden)) == ("max", (128, 128))
    assert (config.optimizer.name, config.batch_size) == ("rmsprop", 16)
