"""Training state: one pytree holding everything a resume needs (besides the data iterator)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jnp.ndarray  # raw uint32 key data, so checkpoints hold plain arrays


def create_train_state(
    model: Any,
    tx: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    seed: int,
    compiler_options: dict[str, Any] | None = None,
) -> TrainState:
    """Initialise params, BN statistics and optimiser state deterministically from `seed`.

    One jitted function (the seed is a compile-time constant), so creating the state makes
    no host-to-device transfer and dispatches no eager ops. `compiler_options` go to
    `jax.jit` (tests pass cheap-compile XLA options).
    """

    def init() -> TrainState:
        init_key, dropout_key = jax.random.split(jax.random.key(seed))
        variables = model.init(init_key, jnp.zeros((1, *image_shape)), train=False)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            rng=jax.random.key_data(dropout_key),
        )

    return jax.jit(init, compiler_options=compiler_options)()


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
