"""agr_jax: multi-task age, gender and race models in JAX/Flax."""

__version__ = "0.1.0"
