"""Runs one benchmark section in a fresh Python process and hands its result back.

Why: a training run is one model in one process, and a section timed in a process that has
already run others does not measure that. On the project's 2-core host the ResNet-18 step
read 211.7 img/s in the suite's process after the Xception bench against 256.8 img/s in the
step table of the same run, and the single-worker pipeline 0.61-0.64 of the decode limit
against 0.80 in a fresh process (docs/throughput.md, 2026-12-02): the earlier sections'
heap, freed executables and idle thread pools stay behind. A child per section also leaves
the parent without JAX backends of its own, so on a GPU/TPU each child gets the whole device
(JAX preallocates most of its memory; a TPU opens in one process at a time).

Protocol: the parent pickles (module, function, args, kwargs, settings) to the child's stdin
(`python -m agr_jax.bench.isolate RESULT_PATH`); the child writes (ok, value or traceback) to
RESULT_PATH. Logs go to the shared stderr. Arguments and results must pickle.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class SectionFailed(RuntimeError):
    """A section raised, or its process died, in the child."""


def child_env(*roots: str) -> dict[str, str]:
    """The parent's environment, with `roots` and the parent's import roots first on
    PYTHONPATH: the working directory (the repository root, for benchmarks/, which is not part
    of the package) and wherever `agr_jax` was imported from, so a child imports the same
    code as the parent."""
    import agr_jax

    roots = (*roots, os.getcwd(), str(Path(agr_jax.__file__).resolve().parents[1]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, [*roots,
                                                                    env.get("PYTHONPATH")])))
    return env


def run_in_child(fn: Callable[..., Any], *args: Any, cpu_devices: int = 0,
                 **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` in a fresh interpreter; its return value, or `SectionFailed`.

    `cpu_devices`: as `--cpu_devices` (the split must happen before the child's JAX starts).
    """
    name = f"{fn.__module__}.{fn.__qualname__}"
    payload = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs,
                            {"cpu_devices": cpu_devices}))
    with tempfile.TemporaryDirectory(prefix="agr_jax_bench_") as tmp:
        result_path = Path(tmp) / "result.pkl"
        log.debug("running %s in a child process", name)
        proc = subprocess.run([sys.executable, "-m", __name__, str(result_path)],
                              input=payload, env=child_env(), check=False)
        if not result_path.exists():
            raise SectionFailed(f"benchmark section {name}: its process exited with code "
                                f"{proc.returncode} before writing a result (its log is above)")
        ok, value = pickle.loads(result_path.read_bytes())
    if not ok:
        raise SectionFailed(f"benchmark section {name} failed in its own process:\n{value}")
    return value


def run_in_process(fn: Callable[..., Any], *args: Any, cpu_devices: int = 0,
                   **kwargs: Any) -> Any:
    """Same contract as `run_in_child`, in this process (`--noisolate`: debugging, and
    measuring what sharing a process costs). Arguments and result still go through pickle,
    so a section that could not cross to a child fails here too. `cpu_devices` was applied
    by the caller (this process's JAX may have started already)."""
    del cpu_devices
    args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
    return pickle.loads(pickle.dumps(fn(*args, **kwargs)))


def _child_main(result_path: Path) -> None:
    module, qualname, args, kwargs, settings = pickle.loads(sys.stdin.buffer.read())
    try:
        from agr_jax import host_memory
        from agr_jax.cli import setup_logging
        from agr_jax.train.parallel import use_cpu_devices

        setup_logging()
        host_memory.reuse_freed_memory()  # as the training entry point does
        use_cpu_devices(settings["cpu_devices"])
        fn: Any = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        result = (True, fn(*args, **kwargs))
    except BaseException:  # noqa: BLE001 -- everything goes back to the parent, named
        result = (False, traceback.format_exc())
    result_path.write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]))
