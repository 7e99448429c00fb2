"""agr_jax: multi-task age, gender and race models in JAX/Flax."""

from agr_jax import host_memory as _host_memory

_host_memory.retain_freed_memory()  # opt-in, before JAX starts threads: host_memory.py

__version__ = "0.1.0"
