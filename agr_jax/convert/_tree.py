"""What every importer shares: the template of a backbone's variables, the order in which its
layers run, and writing the converted tree as an Orbax checkpoint.

Converted files hold `{"params": {"backbone": ...}, "batch_stats": {"backbone": ...}}`, the
paths of a `models.build(name, ...)` model, so `config.init.checkpoint` loads them into any
model with that backbone (heads are new and keep their initialisation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from agr_jax import models
from agr_jax.models.layers import SeparableConv


@dataclasses.dataclass
class Layer:
    """One weight-holding Flax layer, in the order the forward pass calls it."""

    path: tuple[str, ...]  # module path inside the backbone
    kind: str  # conv | depthwise | separable | bn | dense


def backbone_variables(name: str, image_size: int, **options: Any) -> dict[str, Any]:
    """Shapes (ShapeDtypeStructs) of `name`'s params and batch_stats, nothing computed."""
    backbone = models.BACKBONES[name](**options)
    images = jnp.zeros((1, image_size, image_size, 3))
    return jax.eval_shape(lambda: backbone.init(jax.random.key(0), images, train=False))


def layer_order(name: str, image_size: int, **options: Any) -> list[Layer]:
    """The backbone's weight layers in call order (a SeparableConv counts as one layer).

    Flax trees sort their keys, so the order source formats store layers in (Keras: creation
    order) can only be matched against the order of the forward pass, recorded here."""
    backbone = models.BACKBONES[name](**options)
    variables = backbone_variables(name, image_size, **options)
    layers: list[Layer] = []
    separable: set[tuple[str, ...]] = set()

    def record(next_fun, args, kwargs, context):
        module, path = context.module, tuple(context.module.path)
        if context.method_name == "__call__" and not any(path[: len(s)] == s for s in separable):
            if isinstance(module, SeparableConv):
                separable.add(path)
                layers.append(Layer(path, "separable"))
            elif isinstance(module, nn.Conv):
                grouped = module.feature_group_count > 1
                layers.append(Layer(path, "depthwise" if grouped else "conv"))
            elif isinstance(module, nn.BatchNorm):
                layers.append(Layer(path, "bn"))
            elif isinstance(module, nn.Dense):
                layers.append(Layer(path, "dense"))
        return next_fun(*args, **kwargs)

    images = jnp.zeros((1, image_size, image_size, 3))
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v: backbone.apply(v, images, train=False), variables)
    return layers


def get_in(tree: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def set_in(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def check_complete(converted: dict, template: dict, source: str) -> None:
    """Every template leaf was filled with an array of its shape; else a clear error."""
    want = {jax.tree_util.keystr(p): x.shape for p, x in _leaves(template)}
    have = {jax.tree_util.keystr(p): np.shape(x) for p, x in _leaves(converted)}
    problems = [f"  {k}: not in {source}" for k in sorted(want.keys() - have.keys())]
    problems += [
        f"  {k}: {source} gives {have[k]}, the model expects {want[k]}"
        for k in sorted(want.keys() & have.keys())
        if tuple(have[k]) != tuple(want[k])
    ]
    if problems:
        raise ValueError(f"{source} does not fit the backbone:\n" + "\n".join(problems[:25]))


def _leaves(tree: Any):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def save(variables: dict[str, Any], out_dir: str | Path) -> Path:
    """Write backbone variables as the Orbax tree `config.init.checkpoint` reads."""
    out = Path(out_dir).absolute()
    tree = {
        collection: {"backbone": jax.tree.map(np.asarray, variables[collection])}
        for collection in ("params", "batch_stats")
        if variables.get(collection)
    }
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out, tree, force=True)
    return out


def load(path: str | Path) -> dict[str, Any]:
    """An Orbax tree written by `save` (or any params tree) as host numpy arrays."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"init.checkpoint: {path} is not an Orbax checkpoint directory")
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path)
