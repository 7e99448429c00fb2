"""Print the model-zoo table of docs/training.md: parameters and forward FLOPs per backbone.

    PYTHONPATH=. python benchmarks/model_table.py

Each row is a `configs/utkface_*.py` reference config (UTKFace heads: age regression, gender 2,
race 5) at its input size. FLOPs are counted per layer by `agr_jax.models.flops` (2 x MACs of
convs and matmuls, one image, inference). Nothing is compiled or run, so it takes seconds.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agr_jax import models, tasks  # noqa: E402
from agr_jax.models.flops import forward_flops  # noqa: E402


def load_config(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def row(config_path: Path) -> dict[str, object]:
    config = load_config(config_path)
    spec = tasks.TaskSpec.from_config(config.tasks)
    model = models.build_from_config(config.model, spec.output_sizes(), **spec.model_options())
    size = int(config.data.image_size)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
    return {
        "config": f"configs/{config_path.name}",
        "backbone": config.model.name,
        "input": f"{size}x{size}",
        "backbone_params": count(variables["params"]["backbone"]),
        "params": count(variables["params"]),
        "gflops": forward_flops(model, size) / 1e9,
    }


def main() -> None:
    rows = [row(p) for p in sorted((REPO / "configs").glob("utkface_*.py"))]
    print("| backbone | input | backbone params | total params | forward GFLOPs/image | config |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| `{r['backbone']}` | {r['input']} | {r['backbone_params'] / 1e6:.2f} M "
            f"| {r['params'] / 1e6:.2f} M | {r['gflops']:.2f} | `{r['config']}` |"
        )


if __name__ == "__main__":
    main()
