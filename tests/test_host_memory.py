"""host_memory: with agr_jax's settings, XLA:CPU's large buffers are reused instead of faulted
in afresh on every call (and `AGR_JAX_HOST_MALLOC=default` keeps glibc's and JAX's behaviour)."""

import os
import subprocess
import sys

import jax
import pytest

from agr_jax import host_memory

PROBE = """
import resource
import jax
from agr_jax import host_memory
state = host_memory.reuse_freed_memory()  # as the entry points do, before JAX starts
from agr_jax.bench.step import ModelSpec, StepBench
bench = StepBench(ModelSpec("resnet18", 64, 64, "float32", {"width": 0.25}))
bench.first_call()
bench.time_window(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
bench.time_window(5)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5
print(jax.config.read("jax_cpu_enable_async_dispatch"), state, faults)
"""


def _faults_per_call(setting: str) -> tuple[bool, str, int]:
    env = {**os.environ, "AGR_JAX_HOST_MALLOC": setting, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", " ".join(out[1:-1]), int(out[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_training_step_buffers_are_reused_not_faulted_in():
    """Minor page faults per training step of a small ResNet: ~12,000 under glibc's and
    JAX's defaults on this project's host, ~0 with the settings (a few late first uses)."""
    is_async, state, reused = _faults_per_call("reuse")
    default_async, default_state, default = _faults_per_call("default")
    assert state == "applied" and not is_async
    assert default_state == "off (AGR_JAX_HOST_MALLOC=default)" and default_async
    assert default > 3000, default  # glibc's defaults: buffers mapped afresh every step
    assert reused < default / 10, (reused, default)


def test_setting_is_checked_and_must_precede_jax(monkeypatch):
    monkeypatch.setenv(host_memory.ENV, "retain")
    with pytest.raises(ValueError, match=r"AGR_JAX_HOST_MALLOC: expected one of \('reuse'"):
        host_memory.setting()
    monkeypatch.setenv(host_memory.ENV, "reuse")
    monkeypatch.setattr(host_memory, "state", "not applied")
    jax.devices()  # this process's backends are up: too late to change the dispatch mode
    with pytest.raises(RuntimeError, match="before anything touches jax.devices"):
        host_memory.reuse_freed_memory()
    assert jax.config.read("jax_cpu_enable_async_dispatch")  # left as it was
