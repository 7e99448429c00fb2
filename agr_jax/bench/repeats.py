"""One section's results from several fresh processes, combined into one.

Why: on the 2-core host each process runs at a speed of its own. The same RoR step timed in
four fresh processes ran at 68-84 ms/step (2026-12-06). In one suite run the RoR process
ran at 846 img/s in every window, against 1,015-1,091 in four other runs, while PyTorch ran
as usual, so that run's `vs_pytorch.ror` read 0.90 against 1.10-1.25 in the others. Rounds
inside one process cannot average that out; more processes can (pyperf runs each benchmark
in many processes for the same reason).

Paired rounds are pooled: a repeated section's ratio is the median of every round's ratio
from every process, and each repeat's own values are kept beside it (`per_repeat`), so a
slow process shows instead of disappearing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def median_index(values: Sequence[float]) -> int:
    """Index of the median value (the lower one of the middle two for an even count)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[(len(values) - 1) // 2]


def merge_step(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The step row of the median repeat (by img/s), whole, so its fields stay consistent,
    plus every repeat's img/s."""
    speeds = [row["img_s"] for row in rows]
    merged = dict(rows[median_index(speeds)])
    merged["repeats"] = len(rows)
    merged["per_repeat"] = {"img_s": speeds, "compile_s": [row["compile_s"] for row in rows]}
    return merged


def pool_paired(results: Sequence[dict[str, Any]], ratio: str, numerator: str,
                denominator: str) -> dict[str, Any]:
    """Results of a paired comparison (`window_ratios` per round, `ratio` their median,
    `numerator` / `denominator` each arm's median speed) pooled over repeats.

    The pooled `ratio` is the median over every repeat's rounds; the arms' speeds are the
    medians of the repeats' speeds, and `ratio_of_medians` their quotient.
    """
    if not results:
        raise ValueError("pool_paired: no results to pool")
    pooled = [r for result in results for r in result["window_ratios"]]
    merged = dict(results[0])
    merged.update({
        ratio: statistics.median(pooled),
        "window_ratios": pooled,
        numerator: statistics.median(result[numerator] for result in results),
        denominator: statistics.median(result[denominator] for result in results),
        "repeats": len(results),
        "per_repeat": {key: [result[key] for result in results]
                       for key in (ratio, numerator, denominator, "window_steps")
                       if key in results[0]},
    })
    merged["ratio_of_medians"] = merged[numerator] / merged[denominator]
    return merged


def merge_model(outs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`sections.model` results of repeats of one model: its step row and `vs_pytorch`."""
    if len(outs) == 1:
        return outs[0]
    merged: dict[str, Any] = {"skipped": {k: v for out in outs for k, v in out["skipped"].items()}}
    if all("step" in out for out in outs):
        merged["step"] = merge_step([out["step"] for out in outs])
    if all("vs_pytorch" in out for out in outs):
        merged["vs_pytorch"] = pool_paired([out["vs_pytorch"] for out in outs], "ratio",
                                           "img_s", "torch_img_s")
    return merged


def merge_loop(outs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`sections.loop` results of repeats of one loop variant (and of their `short` laps)."""
    if len(outs) == 1:
        return outs[0]
    merged = pool_paired(outs, "loop_efficiency", "loop_img_s", "step_img_s")
    if all("short" in out for out in outs):
        merged["short"] = pool_paired([out["short"] for out in outs], "loop_efficiency",
                                      "loop_img_s", "step_img_s")
    return merged
