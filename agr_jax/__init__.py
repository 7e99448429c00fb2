"""agr_jax: multi-task age, gender and race models in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import agr_jax` stays light (no JAX import until a Predictor is wanted).
    if name == "Predictor":
        from agr_jax.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'agr_jax' has no attribute {name!r}")
