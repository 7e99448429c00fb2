"""Importers: weights in other frameworks' formats -> agr_jax (Flax) parameters.

One module per source format; each has `main(argv)` for `python -m agr_jax.convert FORMAT ...`.
"""
