"""`config.init.phases`: fine-tuning in phases, e.g. heads only, then the whole net.

A phase is `(epochs, lr_multipliers)`: for that many epochs every parameter's update is also
multiplied by the first matching glob's multiplier (same globs and paths as
`optimizer.lr_multipliers`, on top of them; unmatched x1). The last phase runs to the end
(its epochs may be 0). A multiplier of 0 freezes: the update is zeroed and the BatchNorm
statistics under a frozen path keep their values (the step writes the old ones back), so a
frozen pretrained trunk keeps its statistics. The frozen trunk still runs its forward pass in
training mode (batch statistics normalise, as a `requires_grad=False` trunk in PyTorch) and
its gradients are still computed; only updates and stored statistics are held.

    c.init.phases = ((2, (("backbone/*", 0.0),)), (0, ()))  # 2 epochs heads only, then all
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agr_jax.train.optim import make_optimizer, param_path, parse_lr_multipliers


@dataclasses.dataclass(frozen=True)
class Phase:
    start_step: int
    multipliers: tuple[tuple[str, float], ...]


def parse_phases(spec: Any, steps_per_epoch: int) -> tuple[Phase, ...]:
    """`init.phases` -> phases with their first step; () when unset."""
    phases, start = [], 0
    items = list(spec or ())
    for i, item in enumerate(items):
        if len(item) != 2 or not isinstance(item[0], int) or item[0] < 0:
            raise ValueError(
                f"config.init.phases[{i}]: expected (epochs >= 0, ((glob, multiplier), ...)), "
                f"got {item!r}"
            )
        if item[0] == 0 and i < len(items) - 1:
            raise ValueError(f"config.init.phases[{i}]: only the last phase may have 0 epochs")
        try:
            multipliers = parse_lr_multipliers(item[1])
        except ValueError as e:
            raise ValueError(f"config.init.phases[{i}]: {e}") from None
        phases.append(Phase(start, multipliers))
        start += item[0] * steps_per_epoch
    return tuple(phases)


def _multiplier(path: str, multipliers: Sequence[tuple[str, float]]) -> float:
    for pattern, mult in multipliers:
        if fnmatch.fnmatchcase(path, pattern):
            return mult
    return 1.0


def _per_leaf(tree: Any, phases: Sequence[Phase], step: jnp.ndarray) -> Any:
    """Tree of the current phase's multiplier for every leaf (a traced scalar each)."""
    phase = jnp.sum(jnp.asarray([p.start_step for p in phases[1:]], jnp.int32) <= step)

    def leaf(path, _):
        values = [_multiplier(param_path(path), p.multipliers) for p in phases]
        return jnp.asarray(values, jnp.float32)[phase]

    return jax.tree_util.tree_map_with_path(leaf, tree)


class PhaseState(NamedTuple):
    count: jnp.ndarray


def scale_by_phase(phases: Sequence[Phase]) -> optax.GradientTransformation:
    """Multiplies each update by its phase multiplier (chain it after the optimiser)."""

    def init(params):
        del params
        return PhaseState(count=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        scales = _per_leaf(updates, phases, state.count)
        updates = jax.tree.map(lambda u, s: (u * s).astype(u.dtype), updates, scales)
        return updates, PhaseState(count=state.count + 1)

    return optax.GradientTransformation(init, update)


def with_phases(
    tx: optax.GradientTransformation, phases: Sequence[Phase]
) -> optax.GradientTransformation:
    return optax.chain(tx, scale_by_phase(phases)) if phases else tx


def run_optimizer(config: Any, total_steps: int,
                  steps_per_epoch: int) -> optax.GradientTransformation:
    """The run's optimiser with its phases: the one tree its checkpoints hold, so whatever
    restores a run (training's resume, evaluation) builds the same structure."""
    spec = config.get("init", {}).get("phases", ())
    return with_phases(make_optimizer(config.optimizer, total_steps),
                       parse_phases(spec, steps_per_epoch))


def hold_frozen_stats(phases: Sequence[Phase], step: jnp.ndarray, old: Any, new: Any) -> Any:
    """BatchNorm statistics: the old value where the current phase freezes the path."""
    if not phases or not jax.tree.leaves(old):
        return new
    scales = _per_leaf(old, phases, step)
    return jax.tree.map(lambda o, n, s: jnp.where(s == 0, o, n), old, new, scales)
