"""Side-by-side measurements for the A/B scripts in benchmarks/: alternate arms, report medians.

This machine is shared and noisy; alternating one measurement of each arm per round makes
every arm see the same load, and the per-round values show how much it moved.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternate(arms: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """One call of every arm per round, `rounds` times; each arm's values in round order."""
    values: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, measure in arms.items():
            values[name].append(measure())
    return values


def print_medians(title: str, values: dict[str, list[float]], fmt: str) -> None:
    """`title`, then per arm its median and every round's value, formatted with `fmt`."""
    print(title)
    width = max(len(name) for name in values)
    for name, series in values.items():
        print(f"  {name:<{width}}  median {statistics.median(series):{fmt}}   "
              + " ".join(f"{v:{fmt}}" for v in series))
