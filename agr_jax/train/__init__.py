"""Training library; `python -m agr_jax.train` runs `__main__.py` (flags only)."""
