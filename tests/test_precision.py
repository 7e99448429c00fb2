"""Inference compute dtype: a release names one, a host without native bfloat16 runs it in
float32; bfloat16 outputs stay float32 arrays close to float32's."""

import numpy as np
import pytest
from conftest import FAST_COMPILE
from inference_fakes import CALIBRATION, SIZE, tiny_bundle

from agr_jax.inference import bundle as bundle_lib
from agr_jax.inference import precision
from agr_jax.inference.predictor import Predictor

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"


def test_native_bfloat16_by_platform_and_cpu_flags():
    assert precision.native_bfloat16("cpu", ZEN4)
    assert not precision.native_bfloat16("cpu", SKYLAKE)
    assert not precision.native_bfloat16("cpu", "")  # no /proc/cpuinfo: not assumed
    assert precision.native_bfloat16("gpu", SKYLAKE) and precision.native_bfloat16("tpu", "")


def test_choose_keeps_the_release_dtype_only_where_it_is_native():
    assert precision.choose("bfloat16", "cpu", ZEN4) == "bfloat16"
    assert precision.choose("bfloat16", "cpu", SKYLAKE) == "float32"
    assert precision.choose("float32", "cpu", ZEN4) == "float32"
    with pytest.raises(ValueError, match="compute_dtype: expected one of"):
        precision.choose("float16", "gpu")


def test_model_json_carries_the_compute_dtype():
    b = tiny_bundle()
    b.compute_dtype = "bfloat16"
    description = b.describe()
    assert bundle_lib.from_description(description, b.variables).compute_dtype == "bfloat16"
    description.pop("compute_dtype")  # a release written before the field: float32
    assert bundle_lib.from_description(description, b.variables).compute_dtype == "float32"
    with pytest.raises(ValueError, match="model.json compute_dtype"):
        bundle_lib.from_description({**description, "compute_dtype": "int8"}, b.variables)


def test_bfloat16_predictor_is_close_to_float32_and_returns_float32():
    b = tiny_bundle(CALIBRATION)
    crops = np.random.default_rng(0).integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
    out = {dtype: Predictor(b, compute_dtype=dtype, compiler_options=FAST_COMPILE
                            ).predict_crops(crops, raw=True)
           for dtype in ("float32", "bfloat16")}
    for key in ("age_pred", "gender_prob", "race_prob"):
        assert out["bfloat16"][key].dtype == np.float32
    np.testing.assert_allclose(out["bfloat16"]["gender_prob"], out["float32"]["gender_prob"],
                               atol=0.05)
    np.testing.assert_allclose(out["bfloat16"]["age_pred"], out["float32"]["age_pred"],
                               atol=1.0)
    assert not np.array_equal(out["bfloat16"]["age_pred"], out["float32"]["age_pred"])
    with pytest.raises(ValueError, match="compute_dtype"):
        Predictor(b, compute_dtype="float16")
