"""Analytic FLOP counter (exact on hand-counted layers, close to XLA's count) and the zoo
configs (one per backbone, reference input sizes, valid)."""

import importlib.util
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from agr_jax import configuration, models, tasks
from agr_jax.models.flops import forward_flops

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(8, (3, 3), strides=2)(x)  # SAME: 8x8 outputs
        x = nn.Conv(8, (3, 3), feature_group_count=8)(x)  # depthwise
        x = nn.Dense(4)(x.reshape(x.shape[0], -1))
        q = nn.Dense(6)(x)[:, None, :]
        return jnp.einsum("bqd,bkd->bqk", q, q)  # an attention-style matmul


def test_forward_flops_counts_convs_depthwise_and_matmuls_exactly():
    macs = 8 * 8 * 8 * (3 * 3 * 3)  # stem conv: 8x8x8 outputs, 3x3x3 window
    macs += 8 * 8 * 8 * (3 * 3 * 1)  # depthwise: one input channel per output
    macs += (8 * 8 * 8) * 4 + 4 * 6 + 1 * 6  # dense 512->4, dense 4->6, q.q^T
    assert forward_flops(_Tiny(), 16) == 2 * macs


def test_forward_flops_agrees_with_xla_cost_analysis():
    # XLA's own convolutions: cost analysis cannot see into the oneDNN FFI calls (the
    # counter's equality across impls is tested in tests/test_onednn_conv.py).
    model = models.build("resnet18", outputs={"age": 1, "gender": 2, "race": 5}, width=0.25,
                         conv_impl="xla")
    x = jnp.zeros((1, 96, 96, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    compiled = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    if not cost or "flops" not in cost:
        pytest.skip("this backend reports no cost analysis")
    ours = forward_flops(model, 96)
    # XLA skips the zero-padding MACs at borders and adds element-wise ops: within 15%.
    assert abs(ours - cost["flops"]) / cost["flops"] < 0.15, (ours, cost["flops"])


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


REFERENCE_SIZE = {"ror": 64, "inception_resnet_v1": 160, "shallow_lrn": 128, "resblock_cnn": 128}


def test_one_valid_config_per_backbone_at_its_reference_size():
    configs = [_load(p) for p in sorted(CONFIGS.glob("utkface_*.py"))]
    by_backbone = {c.model.name: c for c in configs}
    assert set(by_backbone) == set(models.available())
    for name, c in by_backbone.items():
        configuration.validate(c)
        assert c.data.image_size == REFERENCE_SIZE.get(name, 224), name
        spec = tasks.TaskSpec.from_config(c.tasks)
        model = models.build_from_config(c.model, spec.output_sizes(), **spec.model_options())
        assert isinstance(model, nn.Module)


def test_forward_flops_do_not_depend_on_the_cpu_conv_route():
    """The count is the architecture's: a conv run as a matmul over whole maps
    (`conv._dense_conv`, the 2x2 last stage at 64 px) counts every kernel tap, as XLA's does."""
    from agr_jax import models

    outputs = {"age": 1, "gender": 2, "race": 5}
    counts = {impl: forward_flops(models.build("resnet18", outputs=outputs, width=0.25,
                                               conv_impl=impl), 64)
              for impl in ("auto", "matmul", "xla")}
    assert len(set(counts.values())) == 1, counts
