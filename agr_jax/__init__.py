"""agr_jax: multi-task age, gender and race models in JAX/Flax."""

from agr_jax import host_memory as _host_memory

_host_memory.retain_freed_memory()  # before JAX starts its threads: see host_memory.py

__version__ = "0.1.0"
