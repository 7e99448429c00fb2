"""XLA's FLOP count beside the analytic one (bench/xla_flops.py), and dtype peaks for MFU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from agr_jax.bench import peaks, xla_flops
from agr_jax.models.flops import forward_flops


class OneConv(nn.Module):
    padding: str

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Conv(16, (3, 3), padding=self.padding, use_bias=False)(x)


def _both(padding: str, size: int) -> tuple[float, float]:
    model = OneConv(padding)
    x = jnp.zeros((4, size, size, 8))
    variables = model.init(jax.random.key(0), x)
    xla = xla_flops.compiled_flops(jax.jit(model.apply), variables, x)
    return xla / 4, forward_flops(model, size, channels=8)


def test_counts_agree_where_no_tap_is_on_padding():
    xla, analytic = _both("VALID", 12)
    assert xla == pytest.approx(analytic, rel=0.01)


def test_xla_skips_the_taps_on_padding():
    """On a 3x3 map a SAME 3x3 kernel has 49 of 81 taps inside: XLA counts those only."""
    xla, analytic = _both("SAME", 3)
    assert xla == pytest.approx(analytic * 49 / 81, rel=0.02)
    check = xla_flops.cross_check(xla * 4, analytic, 4)
    assert check["xla_vs_analytic"] == pytest.approx(49 / 81, rel=0.02)
    assert not check["flops_agree"] and "padding" in check["flops_note"]


def test_cross_check_without_a_count():
    assert xla_flops.cross_check(None, 1e9, 8)["flops_agree"] is None


def test_peak_follows_the_dtype():
    assert peaks.device_peak_for_dtype("NVIDIA H100 80GB HBM3", "bfloat16") == ("H100 bf16",
                                                                                 989.0)
    assert peaks.device_peak_for_dtype("NVIDIA H100 80GB HBM3", "float32")[0] == "H100 tf32"
    assert peaks.device_peak_for_dtype("TPU v4", "float32") == ("TPU v4 bf16", 275.0)
    assert peaks.device_peak_for_dtype("cpu", "float32") is None
