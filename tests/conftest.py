"""Shared test fixtures, and one persistent JAX compilation cache for the whole run."""

import os
import shutil
import sys
import tempfile

import pytest

CACHE_ENV = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def pytest_configure(config):
    """Tests compile the same tiny programs over and over, in this process and in the
    training subprocesses (multi-device, multi-host, kill/resume): one on-disk cache, set in
    the environment before JAX is imported so every child inherits it, compiles each once.
    A cache dir already set (JAX_COMPILATION_CACHE_DIR) is kept and left on disk."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    config._agr_jax_cache = tempfile.mkdtemp(prefix="agr_jax_test_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = config._agr_jax_cache
    for key, value in CACHE_ENV.items():
        os.environ.setdefault(key, value)
    if "jax" in sys.modules:  # imported by a plugin before this hook: its config is read
        import jax

        jax.config.update("jax_compilation_cache_dir", config._agr_jax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    cache = getattr(config, "_agr_jax_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """120 synthetic UTKFace-format 48px images plus the synthetic module's malformed files."""
    from agr_jax.data import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, 120, seed=0, size=48, with_malformed=True)
    return out


@pytest.fixture(scope="session")
def synthetic_tfds(synthetic_dir, tmp_path_factory):
    """The synthetic_dir prepared as a TFDS build (seed 0, 0.8/0.1/0.1); returns OUT."""
    from agr_jax.data import prepare

    out = tmp_path_factory.mktemp("synthetic_tfds")
    prepare.prepare(synthetic_dir, out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_eval_run(tmp_path_factory, synthetic_dir):
    """One tiny trained run (16 px, flip TTA at evaluation) shared by the evaluation-report
    and release tests: training it once saves a compile-bound minute of CI."""
    from agr_jax.train.loop import train_and_evaluate

    config = make_tiny_config(**{"data.dir": str(synthetic_dir), "data.image_size": 16,
                                 "eval_batch_size": 32})
    config.eval_flip_tta = True
    # Fine-tuned the way configs/utkface_faceres.py is (phases + a trunk multiplier): the
    # optimiser's tree then differs from a plain run's, and evaluation must restore it.
    config.init.phases = ((1, (("backbone/*", 0.0),)), (0, ()))
    config.optimizer.lr_multipliers = (("backbone/*", 0.3),)
    workdir = tmp_path_factory.mktemp("eval_run")
    train_and_evaluate(config, workdir)
    return workdir


def make_tiny_config(**overrides):
    """The quickstart config shrunk for tests: width-4 RoR, 32px, 240 synthetic faces."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.data.synthetic_num = 240
    c.data.image_size = 32
    c.model.width = 4
    c.model.stage_sizes = (1, 1)
    c.model.head_hidden = (16,)
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_epochs = 2
    c.log_every_steps = 2
    c.optimizer.warmup_steps = 0
    for dotted, value in overrides.items():
        node = c
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


@pytest.fixture
def tiny_config():
    return make_tiny_config


# XLA CPU options for tiny test models (also accepted by `create_train_state`).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# And XLA CPU's older elemental emitters for fusions instead of its fusion emitters: train
# steps of the zoo's tiny nets compile 2.4-2.8x faster again (inception_resnet_v1 9 s against
# 23 s, 2026-12-08). For tests whose values need only be finite and move, not match others.
CHEAP_COMPILE = {**FAST_COMPILE, "xla_cpu_use_fusion_emitters": False}
# The same as XLA_FLAGS, for single-device training subprocesses whose results are compared
# only with runs compiled the same way (bit-identical resumes) or not at all (CLI plumbing).
# Not for multi-device parity checks: tests/test_parallel.py's 2x2 and 1x4 runs built this
# way ended up to 115% apart (bn biases; 2026-12-08), against < 1e-5 compiled as usual.
CHEAP_XLA_FLAGS = " ".join(f"--{k}={str(v).lower()}" for k, v in CHEAP_COMPILE.items())


@pytest.fixture(scope="session")
def fast_jit():
    """`jax.jit` with XLA's CPU backend optimisations off: tiny test models compile ~2-3x
    faster (conv nets: seconds each) and their run time is negligible anyway."""
    import functools

    import jax

    return functools.partial(jax.jit, compiler_options=FAST_COMPILE)
