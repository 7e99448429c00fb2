"""The persistent compilation cache: where `enable` puts it, that "off" turns it off, and that
a fresh process runs a program holding the oneDNN FFI custom call from the cache (no
compile) with the same outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ENABLE = """
import json, sys
from agr_jax.inference import compile_cache
import jax
folder = compile_cache.enable(None if sys.argv[1] == "-" else sys.argv[1])
print(json.dumps({"folder": folder, "enabled": jax.config.jax_enable_compilation_cache,
                  "dir": jax.config.jax_compilation_cache_dir,
                  "min_secs": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""

# One oneDNN convolution, jitted; prints the programs JAX asked for, the persistent-cache hits
# among them, the output and whether the lowered program calls the FFI target. (In jax 0.10
# the backend-compile event times the cache lookup too, so compiles = requests - hits.)
FFI_RUN = """
import json, sys
import numpy as np
from agr_jax.inference import compile_cache
compile_cache.enable(sys.argv[1])
import jax, flax.linen as nn
from agr_jax.models import onednn_conv
from agr_jax.models.conv import conv_general_dilated_for

if onednn_conv.status() != "ready":
    print(json.dumps({"skip": onednn_conv.status()}))
    sys.exit(0)
counts = {"requests": 0, "hits": 0}

def on_duration(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        counts["requests"] += 1

def on_event(event, **kw):
    if event == "/jax/compilation_cache/cache_hits":
        counts["hits"] += 1

jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
conv = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)),
               conv_general_dilated=conv_general_dilated_for("onednn"))
x = np.random.default_rng(0).normal(size=(2, 24, 24, 8)).astype(np.float32)
params = conv.init(jax.random.key(0), x)
forward = jax.jit(conv.apply)
text = forward.lower(params, x).as_text()
y = np.asarray(forward(params, x))
print(json.dumps({**counts, "compiles": counts["requests"] - counts["hits"],
                  "ffi": onednn_conv.TARGETS["forward"] in text,
                  "y": y.ravel()[:64].tolist(), "sum": float(y.sum())}))
"""


def _run(code: str, *args: str, env: dict | None = None) -> dict:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("JAX_COMPILATION_CACHE", "AGR_JAX_COMPILE_CACHE"))}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**base, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_enable_chooses_the_folder_and_off_turns_it_off(tmp_path):
    home = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    default = _run(ENABLE, "-", env=home)
    assert default["folder"] == str(tmp_path / "xdg" / "agr_jax" / "jax") == default["dir"]
    assert default["enabled"] and default["min_secs"] == 0
    assert Path(default["folder"]).is_dir()
    from_env = _run(ENABLE, "-", env={**home, "AGR_JAX_COMPILE_CACHE": str(tmp_path / "e")})
    assert from_env["folder"] == str(tmp_path / "e")
    given = _run(ENABLE, str(tmp_path / "flag"), env={"AGR_JAX_COMPILE_CACHE": "off"})
    assert given["folder"] == str(tmp_path / "flag")  # the flag wins over the variable
    off = _run(ENABLE, "-", env={**home, "AGR_JAX_COMPILE_CACHE": "off"})
    assert off["folder"] is None and not off["enabled"]
    assert _run(ENABLE, "off", env=home)["folder"] is None
    jax_dir = _run(ENABLE, "-", env={**home, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "j")})
    assert jax_dir["folder"] == str(tmp_path / "j")  # a folder given to JAX itself is kept


def test_onednn_ffi_program_runs_from_the_cache_in_a_fresh_process(tmp_path):
    cache = str(tmp_path / "cache")
    cold = _run(FFI_RUN, cache)
    if "skip" in cold:
        pytest.skip(f"oneDNN convolutions unavailable: {cold['skip']}")
    assert cold["ffi"], "the program must hold the oneDNN custom call for this test to mean it"
    assert cold["compiles"] >= 1
    assert any(Path(cache).iterdir()), "the compiled program was written to the cache"
    warm = _run(FFI_RUN, cache)
    assert warm["compiles"] == 0 and warm["hits"] >= 1, warm
    assert warm["y"] == cold["y"] and warm["sum"] == cold["sum"]
