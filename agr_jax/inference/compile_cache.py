"""JAX's persistent compilation cache, on by default for the inference entry points.

A fresh `python -m agr_jax.predict` spends most of its first seconds compiling the detector
and the model; with the cache, a second process loads those programs from disk instead
(docs/predict.md has the cold and warm times). The folder: `enable(path)`, else the
`AGR_JAX_COMPILE_CACHE` environment variable, else a `JAX_COMPILATION_CACHE_DIR` already
given to JAX, else `$XDG_CACHE_HOME/agr_jax/jax` (`~/.cache/agr_jax/jax`); "off" disables it.
Every program is cached, however quick its compile (the default skips those under a second,
which is most of a detector's canvases).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agr_jax import paths

ENV = "AGR_JAX_COMPILE_CACHE"
OFF = ("off", "none", "no", "0", "false")
logger = logging.getLogger(__name__)


def default_dir() -> Path:
    return paths.cache_dir("jax")


def enable(path: str | None = None) -> str | None:
    """Turns the persistent cache on in `path` (see the module doc for the default) and
    returns the folder, or turns it off and returns None (`path` or the variable "off", or
    a folder that cannot be created: logged). Call it before the first compile."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    choice = path if path is not None else os.environ.get(ENV)
    if choice is None:
        choice = jax.config.jax_compilation_cache_dir or str(default_dir())
    folder = None
    if choice.strip().lower() not in OFF:
        folder = Path(choice).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            logger.warning("compilation cache off: cannot create %s (%s)", folder, e)
            folder = None
    compilation_cache.reset_cache()  # a cache set up by an earlier compile reads the new one
    jax.config.update("jax_enable_compilation_cache", folder is not None)
    if folder is None:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    if "jax_persistent_cache_min_entry_size_bytes" in jax.config.values:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)
