"""`loop_device` / `loop_efficiency.device` (bench/device_loop.py) on a tiny model."""

import pytest

from agr_jax.bench import suite
from agr_jax.bench.step import ModelSpec

TINY_ROR = {"width": 4, "stage_sizes": (1, 1), "head_hidden": (16,)}


def test_device_loop_sections_report_every_k(tmp_path):
    tiny = suite.Suite(
        models=[], synthetic_num=80, loop_steps=4, loop_windows=2,
        device_loop_models=[ModelSpec("ror", 16, 8, "float32", TINY_ROR)],
        steps_per_call=(1, 2),
    )
    report: dict = {}

    def call_for(spec, section, fn, *args):  # in this process, once
        return [fn(*args)]

    suite.run_device_loops(tiny, report, call_for, None, tmp_path)
    assert set(report["loop_device"]) == {"ror_k1", "ror_k2"}
    for key, lp in report["loop_device"].items():
        assert lp["placement"] == "device" and lp["steps_per_call"] == int(key[-1])
        assert lp["timed_steps"] == 4 and len(lp["window_ratios"]) == 2
        assert lp["loop_img_s"] > 0 and lp["step_img_s"] > 0 and lp["loop_efficiency"] > 0
    assert report["loop_efficiency.device"] == report["loop_device"]["ror_k1"]["loop_efficiency"]
    report.update(step={}, vs_pytorch={}, skipped={}, peak={"float32": 1.0},
                  meta={"date": "d", "machine": "m", "device_kind": "cpu", "jax": "j"})
    report["targets"] = suite.targets(report)
    assert report["targets"]["loop_efficiency.device"]["target"] == 0.99
    text = suite.format_report(report)
    assert "loop_device ror_k2" in text
    assert "ms/step" not in text  # no step section, so no empty step table header


def test_cpu_suite_times_the_recipe_model_on_the_device_path():
    cpu = suite.get_suite("cpu")
    assert cpu.device_loop_models == [suite.RECIPE_MODEL]
    assert suite.RECIPE_MODEL.image_size == 80 and suite.RECIPE_MODEL.batch == 128
    assert 1 in cpu.steps_per_call


@pytest.mark.parametrize("name", ["cpu", "accelerator"])
def test_suites_name_device_loops(name):
    assert suite.get_suite(name).device_loop_models
