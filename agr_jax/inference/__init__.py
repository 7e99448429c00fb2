"""Inference: detect faces, align them as the training crops are framed, predict.

Knows nothing of training beyond loading a checkpoint (`agr_jax.inference.load`).
"""
