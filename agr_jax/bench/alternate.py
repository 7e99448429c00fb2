"""Side-by-side measurements: alternate arms, report medians and paired ratios.

This machine is shared and noisy; alternating one measurement of each arm per round makes
every arm see the same load, and the per-round values show how much it moved. A ratio of two
arms is the median of the per-round ratios (`paired_ratio`): each round's two windows ran
seconds apart under the same load, so its ratio cancels drift that a ratio of the two arms'
medians, taken from different rounds, keeps (2026-12-03: per-worker pipeline windows of one
run read 0.73, 0.62 and 0.83 as pairs, 0.64 as a ratio of medians).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence


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


def round_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """numerator / denominator of each round."""
    if not numerators or len(numerators) != len(denominators):
        raise ValueError(f"need equally many rounds per arm, got {len(numerators)} and "
                         f"{len(denominators)}")
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median over rounds of numerator / denominator (the suite's ratio of two arms)."""
    return statistics.median(round_ratios(numerators, denominators))
