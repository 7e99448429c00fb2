"""`config.init.checkpoint`: start training from saved weights instead of the seed's init.

The checkpoint is an Orbax tree `{"params": ..., "batch_stats": ...}` (what
`python -m agr_jax.convert FORMAT --out DIR` writes; a bare params tree also works). Leaves are
matched by path: matching shapes load; model leaves the file lacks (new heads) keep their
initialisation; shape mismatches and file leaves with no place in the model are listed by
path and are an error under `init.strict` (before anything is compiled), else logged and
skipped. Only a fresh run initialises: a resumed run restores its own checkpoint over this.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agr_jax.convert import _tree
from agr_jax.train.checkpoint import flatten

log = logging.getLogger(__name__)
COLLECTIONS = ("params", "batch_stats")
MAX_LISTED = 40


class InitMismatch(ValueError):
    """The init checkpoint does not fit the model (listed by path)."""


@dataclasses.dataclass
class Match:
    loaded: list[str]
    mismatched: list[str]  # "path: checkpoint (a,) vs model (b,)"
    unexpected: list[str]  # in the checkpoint, not in the model
    missing: list[str]  # in the model, not in the checkpoint (keep their init)


def read(path: str | Path) -> dict[str, Any]:
    tree = _tree.load(path)
    if not any(c in tree for c in COLLECTIONS):  # a bare params tree
        tree = {"params": tree}
    return {c: tree[c] for c in COLLECTIONS if c in tree}


def match(saved: dict[str, Any], model_vars: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
    """Compare by path; return the comparison and {path: array} of the leaves that load."""
    have, want = flatten(saved), flatten(model_vars)
    result = Match([], [], [], [])
    arrays = {}
    for path in sorted(have.keys() | want.keys()):
        if path not in want:
            result.unexpected.append(path)
        elif path not in have:
            result.missing.append(path)
        elif tuple(np.shape(have[path])) != tuple(want[path].shape):
            shapes = f"checkpoint {tuple(np.shape(have[path]))} vs model {tuple(want[path].shape)}"
            result.mismatched.append(f"{path}: {shapes}")
        else:
            result.loaded.append(path)
            arrays[path] = have[path]
    return result, arrays


def _listing(title: str, lines: list[str]) -> str:
    shown = "\n".join(f"  {line}" for line in lines[:MAX_LISTED])
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return f"{title} ({len(lines)}):\n{shown}{more}"


def load_into(model_vars: dict[str, Any], checkpoint: str | Path, strict: bool) -> dict[str, Any]:
    """`model_vars` ({"params", "batch_stats"}) with the checkpoint's fitting leaves put in."""
    result, arrays = match(read(checkpoint), model_vars)
    problems = []
    if result.mismatched:
        problems.append(_listing("shape mismatches", result.mismatched))
    if result.unexpected:
        problems.append(_listing("in the checkpoint but not in the model", result.unexpected))
    if not result.loaded:
        raise InitMismatch(f"init.checkpoint {checkpoint}: no leaf fits the model\n"
                           + "\n".join(problems))  # fmt: skip
    if problems and strict:
        raise InitMismatch(
            f"init.checkpoint {checkpoint} does not fit the model (init.strict=True; set it "
            "False to load only the fitting leaves):\n" + "\n".join(problems)
        )
    for problem in problems:
        log.warning("init.checkpoint %s: skipped %s", checkpoint, problem)
    if result.missing:
        log.info("init.checkpoint: %s", _listing("kept at initialisation", result.missing))
    log.info("init.checkpoint %s: loaded %d arrays", checkpoint, len(result.loaded))

    leaves, treedef = jax.tree_util.tree_flatten(model_vars)
    paths = list(flatten(model_vars))  # the same order as the leaves
    leaves = [
        jnp.asarray(arrays[path], leaf.dtype) if path in arrays else leaf
        for path, leaf in zip(paths, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def initialise(state: Any, init_config: Any) -> Any:
    """A fresh TrainState with `init.checkpoint` loaded (unchanged when unset)."""
    checkpoint = init_config.get("checkpoint") if init_config is not None else None
    if not checkpoint:
        return state
    current = {"params": state.params, "batch_stats": state.batch_stats}
    loaded = load_into(current, checkpoint, bool(init_config.get("strict", True)))
    ema = dict(loaded) if state.ema is not None else None
    return state.replace(params=loaded["params"], batch_stats=loaded["batch_stats"], ema=ema)
