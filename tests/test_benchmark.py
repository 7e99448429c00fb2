"""The benchmark library on tiny settings: report keys, sane values, FLOP counts, torch twins."""

import importlib.util
import math
import os
import statistics
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from agr_jax import models
from agr_jax.bench import peaks, suite
from agr_jax.bench.step import ModelSpec
from agr_jax.models import flops

HAS_TORCH = importlib.util.find_spec("torch") is not None
# The twins are the PyTorch side of vs_pytorch itself: what they check needs torch.
NO_TORCH = "the PyTorch twin needs torch: pip install 'agr_jax[bench]' (CI: the `twins` extra)"
# One stage: every section compiles this model (step, loop variants, inference) in about
# half the time of two; what the sections report does not depend on its depth.
TINY_ROR = {"width": 4, "stage_sizes": (1,), "head_hidden": (16,)}


class _Convs(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(8, (3, 3), use_bias=False)(x)  # 10x10x8 out, 3 in per output
        x = nn.Conv(8, (3, 3), feature_group_count=8, use_bias=False)(x)  # depthwise
        return nn.Dense(4)(x.reshape(x.shape[0], -1))


def test_forward_flops_counts_convs_depthwise_and_dense():
    expected = 2 * (10 * 10 * 8 * 3 * 9 + 10 * 10 * 8 * 1 * 9 + 10 * 10 * 8 * 4)
    assert flops.forward_flops(_Convs(), 10) == expected
    names = [name for name, _, _ in flops.layer_flops(_Convs(), 10)]
    assert any("Conv_1" in n for n in names) and any("Dense_0" in n for n in names)


def test_device_peak_table_matches_device_kinds():
    assert peaks.device_peak_tflops("NVIDIA H100 80GB HBM3")[0] == "H100"
    assert peaks.device_peak_tflops("NVIDIA A100-SXM4-40GB")[0] == "A100"
    assert peaks.device_peak_tflops("TPU v5 lite")[0] == "TPU v5e"
    assert peaks.device_peak_tflops("TPU v4")[0] == "TPU v4"
    assert peaks.device_peak_tflops("cpu") is None


def test_get_suite_rejects_unknown_models():
    with pytest.raises(ValueError, match="not in the cpu suite"):
        suite.get_suite("cpu", ["nope"])
    assert {m.name for m in suite.get_suite("cpu", ["ror"]).models} == {"ror"}


def test_cpu_suite_repeats_the_sections_with_targets_unless_told():
    cpu = suite.get_suite("cpu")
    assert cpu.repeats == 3 and set(cpu.repeat_sections) == {"ror", "resnet18", "loop"}
    assert suite.get_suite("cpu", repeats=1).repeats == 1
    assert suite.get_suite("accelerator").repeats == 1
    assert suite.get_suite("accelerator", repeats=2).repeat_sections == cpu.repeat_sections
    with pytest.raises(ValueError, match="--repeats: expected at least 1"):
        suite.get_suite("cpu", repeats=0)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    tiny = suite.Suite(
        models=[ModelSpec("ror", 16, 8, "float32", TINY_ROR),
                ModelSpec("not_a_model", 16, 8, "float32", {})],
        steps=2, windows=2, vs_pytorch=("ror",), vs_pytorch_windows=2,  # no torch: skip path
        pipeline_image_size=16, pipeline_batch=8, pipeline_workers=1, pipeline_sample=48,
        pipeline_batches=3, pipeline_windows=3, inference_batch=8, peak_matmul_size=256,
        synthetic_num=80,
        loop_steps=2, loop_windows=2, loop_short_steps=1,
        repeats=2, repeat_sections=("ror", "loop"),  # in this process: exercises the pooling
        accelerator=True,  # adds per-device img/s and MFU (None: no bf16 peak known for CPU)
        # `predict` and `predict_fast` time the released models end to end:
        # tests/test_predict_bench.py covers them on a tiny model.
        sections=tuple(s for s in suite.SECTIONS if s not in ("predict", "predict_fast")),
    )
    work = tmp_path_factory.mktemp("bench")
    # In this process (a child per section costs ~10 s each here); the sections' arguments
    # and results still cross pickle, as they do to a child (test_isolate_* below).
    return suite.run_suite(tiny, data_dir=work / "absent", work_dir=work, isolate=False)


def test_report_has_every_section_with_sane_values(tiny_report):
    r = tiny_report
    assert r["meta"]["sections_isolated"] is False and r["meta"]["device_count"] >= 1
    step = r["step"]["ror"]
    for key in ("img_s", "ms_per_step", "compile_s", "flops_per_img", "achieved_tflops",
                "utilisation", "batch"):
        assert key in step, key
    assert step["img_s"] > 0 and step["batch"] == 8 and step["traces"] == 1
    assert r["meta"]["repeats"] == {"count": 2, "sections": ["ror", "loop"]}
    assert step["repeats"] == 2 and step["img_s"] == min(step["per_repeat"]["img_s"])
    assert step["window_steps"] == 2 and len(step["window_img_s"]) == 2  # window_s 0: fixed
    assert math.isclose(step["img_s"] * step["ms_per_step"] / 1e3, 8, rel_tol=1e-6)
    model = models.build("ror", outputs={"age": 1, "gender": 2, "race": 5}, **TINY_ROR)
    assert step["flops_per_img"] == 3 * flops.forward_flops(model, 16) > 0
    assert 0 < step["utilisation"] < 1.2 and r["peak"]["float32"] > 0
    assert "not_a_model" in r["skipped"]["step.not_a_model"]
    assert step["mfu"] is None and step["img_s_per_device"] == step["img_s"]

    p = r["pipeline"]
    assert p["source"].startswith("synthetic")
    assert p["decode_limit_img_s"] > 0 and p["naive_img_s"] > 0
    assert p["decode_limit_images"] == 8 * (3 + 3)  # what one window reads: 3 warm-up + 3
    assert set(p["img_s"]) == {"1"} and p["img_s_per_worker"] == p["img_s"]["1"]
    w = p["windows"]  # decode limit and 1 worker alternate; each side is a median of 3
    assert len(w["decode_limit_img_s"]) == len(w["one_worker_img_s"]) == 3
    assert p["decode_limit_img_s"] == sorted(w["decode_limit_img_s"])[1]
    assert p["img_s_per_worker"] == sorted(w["one_worker_img_s"])[1]
    pairs = [o / d for o, d in zip(w["one_worker_img_s"], w["decode_limit_img_s"], strict=True)]
    assert p["per_worker_vs_decode_limit"] == pytest.approx(sorted(pairs)[1])
    assert p["per_worker_vs_decode_limit_of_medians"] == pytest.approx(
        p["img_s_per_worker"] / p["decode_limit_img_s"])
    # Windows of 2 sub-millisecond steps: the ratio itself is noise here, its parts are not.
    lp = r["loop"]
    assert lp["loop_img_s"] > 0 and lp["step_img_s"] > 0
    assert lp["ratio_of_medians"] == pytest.approx(lp["loop_img_s"] / lp["step_img_s"])
    assert r["loop_efficiency"] == lp["loop_efficiency"] == pytest.approx(
        statistics.median(lp["window_ratios"]))
    assert r["loop"]["iterators_started"] == 2  # CPU: a fresh pipeline per window
    # Repeated: both repeats' pairs pooled; the variants beside it ran once.
    assert lp["repeats"] == 2 and len(lp["window_ratios"]) == 4
    assert len(lp["per_repeat"]["loop_efficiency"]) == 2
    # Each window also timed at its first step: pooled the same way, reported beside it.
    short = lp["short"]
    assert short["timed_steps"] == 1 and len(short["window_ratios"]) == 4
    assert r["loop_efficiency_short"] == short["loop_efficiency"] == pytest.approx(
        statistics.median(short["window_ratios"]))
    assert lp["window_over_buffer"] == pytest.approx(2 / lp["drained_steps"])
    assert "repeats" not in r["loop_decode_every_epoch"]
    # As training by default: through the decoded cache; beside it, decoding every epoch.
    assert r["loop"]["decoded_cache"] and not r["loop_decode_every_epoch"]["decoded_cache"]
    assert r["loop_decode_every_epoch"]["loop_efficiency"] > 0
    # Flip and pad-crop in the step by default (data.augment_on "auto"); on the host beside it.
    assert lp["augment_on"] == r["loop_decode_every_epoch"]["augment_on"] == "device"
    assert r["loop_host_augment"]["augment_on"] == "host"
    assert r["loop_host_augment"]["loop_efficiency"] > 0
    assert r["inference"]["img_s"] > 0 and r["inference"]["images"] == 2 * 48  # two rounds
    assert set(r["targets"]) >= {"loop_efficiency", "pipeline_vs_naive", "vs_pytorch.ror"}
    text = suite.format_report(r)
    assert "loop_efficiency" in r["targets"] and "loop_host_augment" in text and "ror" in text
    assert "ror: the median of 2 processes" in text
    assert "4 pairs of 2 steps, pair ratios IQR" in text and "at step 1 of each window" in text
    if HAS_TORCH:
        v = r["vs_pytorch"]["ror"]
        assert v["ratio_of_medians"] == pytest.approx(v["img_s"] / v["torch_img_s"])
        assert v["ratio"] == pytest.approx(statistics.median(v["window_ratios"]))
        assert len(v["window_ratios"]) == 4 and v["repeats"] == 2  # 2 rounds x 2 repeats
        assert len(v["per_repeat"]["window_steps"]) == 2
    else:
        assert "torch" in r["skipped"]["vs_pytorch.ror"].lower()


# The CPU suite's vs_pytorch models as benchmarked, and smaller variants of each.
TWINS = [("ror", {"width": 4, "stage_sizes": (1, 1)}, 32),
         ("ror", {"width": 8, "stage_sizes": (2, 1, 1)}, 32),
         ("resnet18", {"width": 1 / 8}, 32),
         *((m.name, m.kwargs, m.image_size) for m in suite.get_suite("cpu").models
           if m.key in suite.VS_PYTORCH_TARGETS)]


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
@pytest.mark.parametrize("name,kw,side", TWINS, ids=lambda v: str(v))
def test_torch_twin_has_the_same_parameters_outputs_and_flops(name, kw, side):
    """vs_pytorch compares the same network: parameter count, output shapes, and FLOPs per
    image (ours from the jaxpr, PyTorch's from its own FlopCounterMode), equal."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from agr_jax.train.state import count_params
    from benchmarks import torch_reference

    model = models.build(name, outputs=torch_reference.OUTPUTS, **kw)
    images = jnp.zeros((2, side, side, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
    ours = jax.eval_shape(lambda v: model.apply(v, images, train=False)[0], variables)
    twin = torch_reference.build(name, **kw).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        theirs = twin(torch.zeros(2, 3, side, side))
    assert count_params(variables["params"]) == torch_reference.count_params(twin)
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert 2 * flops.forward_flops(model, side) == counter.get_total_flops() > 0


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_step_leaves_subnormal_floats_working():
    """PyTorch flushes denormals only while it is timed (left on, it breaks hypothesis)."""
    import numpy as np

    from benchmarks.vs_pytorch import TorchStep

    TorchStep("ror", 16, 2, {"width": 4, "stage_sizes": (1, 1)}).time_window(1)
    tiny = np.float64(np.finfo(np.float64).smallest_subnormal)
    assert tiny * 2.0 > 0


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_twin_process_times_windows_and_reports_a_dead_child():
    from benchmarks.vs_pytorch import TorchStepProcess

    with TorchStepProcess("ror", 16, 2, {"width": 4, "stage_sizes": (1, 1)}) as ref:
        assert ref.version[0].isdigit()
        assert ref.time_window(2) > 0 and ref.proc.poll() is None
    assert ref.proc.returncode == 0
    with pytest.raises(RuntimeError, match="PyTorch twin process: expected 'ready"):
        TorchStepProcess("no_such_model", 16, 2, {})


def test_cpu_suite_judges_the_loop_on_windows_the_read_ahead_cannot_carry():
    from agr_jax.bench import loop as loop_bench

    for name in suite.SUITES:
        chosen = suite.get_suite(name)
        assert chosen.loop_steps >= 4 * loop_bench.buffered_batches(chosen.loop_workers), name
    cpu = suite.get_suite("cpu")
    assert cpu.loop_short_steps is not None and cpu.loop_short_steps < cpu.loop_steps


def test_loop_steps_are_numbered_on_across_windows_as_training_numbers_them(monkeypatch,
                                                                            tmp_path):
    """So the full fetch every `log_every` steps falls inside timed windows as in training."""
    from agr_jax.bench import loop as loop_bench
    from agr_jax.bench import pipeline as pipeline_bench
    from agr_jax.bench.step import StepBench

    checked, fetched = [], []

    class Recording(loop_bench.NonFiniteGuard):
        def check(self, step, step_metrics):
            checked.append(step)
            return super().check(step, step_metrics)

    real_get = loop_bench.jax.device_get
    monkeypatch.setattr(loop_bench, "NonFiniteGuard", Recording)

    def device_get(x):
        if isinstance(x, dict) and "nonfinite" in x:  # a step's metrics, every scalar
            fetched.append(len(checked))
        return real_get(x)

    monkeypatch.setattr(loop_bench.jax, "device_get", device_get)
    data = pipeline_bench.prepare_data(None, tmp_path, synthetic_num=40)
    bench = StepBench(ModelSpec("ror", 16, 8, "float32", TINY_ROR))
    bench.time_window(1)
    drain = loop_bench.buffered_batches(0)
    r = loop_bench.run(bench, data.source, steps=3, windows=2, workers=0, log_every=4,
                       short_steps=2)
    assert checked == list(range(1, 2 * (drain + 3) + 1))  # 1..20, once each, in order
    assert fetched == [s for s in checked if s % 4 == 0]  # every 4th step, and only those
    assert r["short"]["timed_steps"] == 2 and len(r["short"]["window_ratios"]) == 2
    with pytest.raises(ValueError, match="short_steps"):
        loop_bench.run(bench, data.source, steps=3, windows=1, workers=0, short_steps=3)


def test_loop_windows_can_share_one_iterator(tmp_path):
    """The GPU/TPU path: one pipeline serves every window (no worker respawn per window)."""
    from agr_jax.bench import loop as loop_bench
    from agr_jax.bench import pipeline as pipeline_bench
    from agr_jax.bench.step import StepBench

    data = pipeline_bench.prepare_data(None, tmp_path, synthetic_num=40)
    bench = StepBench(ModelSpec("ror", 16, 8, "float32", TINY_ROR))
    bench.time_window(1)
    r = loop_bench.run(bench, data.source, steps=2, windows=3, workers=0,
                       restart_iterator=False)
    assert r["iterators_started"] == 1 and len(r["window_ratios"]) == 3
    assert r["loop_efficiency"] > 0


def test_alternate_interleaves_arms_and_prints_medians(capsys):
    from agr_jax.bench.alternate import alternate, print_medians

    calls = []
    arms = {"a": lambda: calls.append("a") or len(calls), "b": lambda: calls.append("b") or 0.5}
    values = alternate(arms, rounds=3)
    assert calls == ["a", "b"] * 3  # one of each per round: both see the same load
    assert values == {"a": [1, 3, 5], "b": [0.5, 0.5, 0.5]}
    print_medians("title", values, ".1f")
    assert capsys.readouterr().out.splitlines() == [
        "title", "  a  median 3.0   1.0 3.0 5.0", "  b  median 0.5   0.5 0.5 0.5"]


def test_paired_ratio_is_the_median_of_per_round_ratios():
    from agr_jax.bench.alternate import paired_ratio

    # Round 2 ran under load on both arms: its pair still reads 2; the arms' medians
    # (4 and 3) come from different rounds and read 1.33.
    assert paired_ratio([4.0, 40.0, 2.0], [2.0, 20.0, 3.0]) == 2.0
    with pytest.raises(ValueError, match="equally many rounds"):
        paired_ratio([1.0], [1.0, 2.0])


def test_isolate_runs_a_section_in_a_fresh_process_with_its_cpu_split():
    from agr_jax.bench import isolate, sections

    assert isolate.run_in_child(os.getpid) != os.getpid()
    machine = isolate.run_in_child(sections.machine, ["float32"], 64, cpu_devices=2)
    assert machine["meta"]["device_count"] == 2 and machine["peak"]["float32"] > 0


def test_isolate_names_the_section_that_failed_or_died():
    from agr_jax.bench import isolate

    with pytest.raises(isolate.SectionFailed, match=r"(?s)builtins.int failed.*ValueError"):
        isolate.run_in_child(int, "not a number")
    with pytest.raises(isolate.SectionFailed, match="posix._exit: its process exited with "
                                                   "code 3 before writing a result"):
        isolate.run_in_child(os._exit, 3)
    with pytest.raises(TypeError, match="pickle"):  # in-process mode keeps the child's contract
        isolate.run_in_process(threading.Lock)


def test_each_model_section_runs_on_its_own_cpu_split_unless_the_flag_says(monkeypatch,
                                                                           tmp_path):
    from agr_jax.bench import sections

    calls = []

    def runner(fn, *args, cpu_devices=0, **kwargs):
        calls.append((fn.__name__, cpu_devices))
        return fn(*args, **kwargs)

    def fake(name, result):
        def section(*args):
            return result
        section.__name__ = name
        monkeypatch.setattr(sections, name, section)

    monkeypatch.setattr(suite.isolate_sections, "run_in_child", runner)
    fake("machine", {"meta": {}, "peak": {"float32": 1.0}, "table_peak": None})
    fake("model", {"skipped": {}, "step": {}})
    fake("pipeline", {"source": "fake"})
    fake("loop", {"loop_efficiency": 1.0})
    fake("inference", {})
    fake("predict", {"views_1": {"crops_s": 1.0}})
    fake("predict_fast", {"views_1": {"crops_s": 1.0}})
    fake("photos", {"sizes": {}})
    monkeypatch.setattr(suite, "release_missing", lambda name: None)  # as if written
    two = suite.Suite(models=[ModelSpec("ror", 16, 8, cpu_devices=2), ModelSpec("resnet18", 16, 8)])
    suite.run_suite(two, None, tmp_path)
    assert calls == [("machine", 0), ("model", 2), ("model", 0), ("pipeline", 0), ("loop", 2),
                     ("loop", 2), ("loop", 2), ("inference", 2), ("predict", 0),
                     ("predict_fast", 0), ("photos", 0)]
    calls.clear()
    suite.run_suite(two, None, tmp_path, cpu_devices=1)  # --cpu_devices 1 wins everywhere
    assert {devices for _, devices in calls} == {1}
    calls.clear()
    fake("model", {"skipped": {}, "step": {"img_s": 1.0, "compile_s": 1.0}})
    fake("loop", {"loop_efficiency": 1.0, "window_ratios": [1.0], "loop_img_s": 1.0,
                  "step_img_s": 1.0})
    two.repeats, two.repeat_sections = 2, ("resnet18", "loop_host_augment")
    report = suite.run_suite(two, None, tmp_path)
    assert [name for name, _ in calls] == ["machine", "model", "model", "model", "pipeline",
                                           "loop", "loop", "loop", "loop", "inference",
                                           "predict", "predict_fast", "photos"]
    assert "repeats" not in report["step"]["ror"] and report["step"]["resnet18"]["repeats"] == 2
    assert report["loop_host_augment"]["repeats"] == 2 and "repeats" not in report["loop"]
    calls.clear()
    two.sections = ("loop",)  # --sections loop: the loop alone, on the first model's split
    report = suite.run_suite(two, None, tmp_path)
    assert calls == [("machine", 0), ("loop", 2)] and report["meta"]["sections"] == ["loop"]
    assert report["targets"]["loop_efficiency"]["met"] is True
    assert report["targets"]["pipeline_vs_naive"]["met"] is None  # not measured
    with pytest.raises(ValueError, match="--sections: \\['nope'\\] unknown"):
        suite.get_suite("cpu", sections=["loop", "nope"])


def test_predict_target_is_judged_on_the_fast_release_when_it_ran(monkeypatch, tmp_path):
    from agr_jax.bench import sections

    def predict_report(crops_s, release, workdir="runs/w"):
        return {"crops": 4, "skipped": {}, "views_1": {"crops_s": crops_s},
                "views_2": {"crops_s": crops_s / 2}, "views_2_cost": 2.0,
                "model": {"workdir": workdir}, "release": release}

    default, fast = predict_report(600.0, "default"), predict_report(3000.0, "fast")
    t = suite.targets({"vs_pytorch": {}, "predict": default, "predict_fast": fast})
    assert t["predict_crops_s"] == {"value": 3000.0, "target": suite.PREDICT_CROPS_S,
                                    "met": True, "section": "predict_fast", "model": "fast"}
    t = suite.targets({"vs_pytorch": {}, "predict": default})
    assert (t["predict_crops_s"]["met"], t["predict_crops_s"]["section"],
            t["predict_crops_s"]["model"]) == (False, "predict", "default")
    t = suite.targets({"vs_pytorch": {}, "predict": predict_report(600.0, None)})
    assert t["predict_crops_s"]["model"] == "runs/w"  # --predict_workdir: the run

    # Without the fast release the section is skipped, saying how to write it, and never run.
    ran = []
    monkeypatch.setattr(suite.isolate_sections, "run_in_child",
                        lambda fn, *args, cpu_devices=0: ran.append(fn.__name__) or (
                            {"meta": {}, "peak": {}, "table_peak": None}
                            if fn.__name__ == "machine" else default))
    monkeypatch.setattr(sections, "predict_fast", lambda *a: pytest.fail("ran"))
    from agr_jax.inference import release

    monkeypatch.setattr(release, "released_dir", lambda name="default": tmp_path / name)
    only = suite.Suite(models=[], sections=("predict", "predict_fast"))
    report = suite.run_suite(only, None, tmp_path)
    assert ran == ["machine", "predict"] and "predict_fast" not in report
    why = report["skipped"]["predict_fast"]
    assert "configs/utkface_fast_distilled.py" in why and "--out agr_jax/released_fast" in why
    assert report["targets"]["predict_crops_s"]["section"] == "predict"
    both = {**report, "meta": {**report["meta"], "machine": "m", "device_kind": "cpu",
                               "jax": "0"}, "predict_fast": fast}
    text = suite.format_report({**both, "targets": suite.targets(both)})
    assert "predict_fast 3,000 crops/s" in text and "predict 600 crops/s" in text
    assert "(on predict_fast, model fast)" in text


def test_repeats_pool_every_round_so_one_slow_process_shows_but_does_not_decide():
    from agr_jax.bench import repeats

    def comparison(ratios, ours, theirs, steps):
        return {"ratio": statistics.median(ratios), "window_ratios": ratios, "img_s": ours,
                "torch_img_s": theirs, "window_steps": steps, "batch": 64}

    runs = [comparison([1.2, 1.1, 1.3], 1050.0, 875.0, 17),
            comparison([0.9, 0.88, 0.92], 846.0, 940.0, 14),  # a slow process of ours
            comparison([1.15, 1.25, 1.2], 1070.0, 890.0, 17)]
    pooled = repeats.pool_paired(runs, "ratio", "img_s", "torch_img_s")
    assert pooled["ratio"] == statistics.median([1.2, 1.1, 1.3, 0.9, 0.88, 0.92, 1.15, 1.25,
                                                 1.2]) == 1.15
    assert pooled["per_repeat"] == {"ratio": [1.2, 0.9, 1.2], "img_s": [1050.0, 846.0, 1070.0],
                                    "torch_img_s": [875.0, 940.0, 890.0],
                                    "window_steps": [17, 14, 17]}
    assert pooled["img_s"] == 1050.0 and pooled["torch_img_s"] == 890.0
    assert pooled["ratio_of_medians"] == pytest.approx(1050.0 / 890.0)
    assert pooled["repeats"] == 3 and pooled["batch"] == 64
    assert runs[0]["window_ratios"] == [1.2, 1.1, 1.3]  # the inputs are left as they were
    with pytest.raises(ValueError, match="no results"):
        repeats.pool_paired([], "ratio", "img_s", "torch_img_s")

    rows = [{"img_s": v, "compile_s": 10.0, "ms_per_step": 64e3 / v} for v in (900, 700, 800)]
    step = repeats.merge_step(rows)  # the median repeat's row, whole
    assert step["img_s"] == 800 and step["ms_per_step"] == 80.0
    assert step["per_repeat"]["img_s"] == [900, 700, 800] and step["repeats"] == 3
    assert repeats.median_index([3.0, 1.0, 2.0, 4.0]) == 2  # the lower middle: 2.0
    one = {"skipped": {}, "step": rows[0]}
    assert repeats.merge_model([one]) is one and "repeats" not in rows[0]


def test_window_steps_lasts_the_asked_time_and_never_less_than_the_minimum():
    from agr_jax.bench.step import window_steps

    assert window_steps(3, step_s=0.09, window_s=1.0) == 12  # ceil(1 / 0.09)
    assert window_steps(3, step_s=0.4, window_s=1.0) == 3  # the minimum wins
    assert window_steps(3, step_s=0.09, window_s=0.0) == 3  # 0: fixed windows, as before
