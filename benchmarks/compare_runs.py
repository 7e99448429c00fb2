"""Recipes side by side from their evaluation reports (issue 28's comparison).

    python benchmarks/compare_runs.py --group faceres=runs/faceres_s0,runs/faceres_s1 \
        --group scratch=runs/release_r18 [--report test] [--json out.json]

Reads `W/eval/<report>.json` (written by `python -m agr_jax.evaluate --workdir W`) of every
run and prints one Markdown row per run and the mean of each group: gender and race
accuracy, race macro-F1 and the "Others" recall (the class the scratch recipe misses most),
age MAE and CS@5, the views averaged, and the training time between the first and the last
line of `W/metrics.jsonl` (start-up and data preparation before the first logged step are
not in it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

COLUMNS = (("gender_acc", "gender", ".4f"), ("race_acc", "race", ".4f"),
           ("race_macro_f1", "race macro-F1", ".3f"), ("others_recall", "Others recall", ".3f"),
           ("age_mae", "age MAE", ".2f"), ("age_cs5", "CS@5", ".3f"))


def _training_minutes(workdir: Path) -> float | None:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return None
    times = [json.loads(line)["time"] for line in path.read_text().splitlines() if line.strip()]
    return (max(times) - min(times)) / 60 if times else None


def run_row(workdir: Path, report: str) -> dict[str, Any]:
    path = workdir / "eval" / f"{report}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no evaluation report; run "
                                f"`python -m agr_jax.evaluate --workdir {workdir}` first")
    ev = json.loads(path.read_text())
    config = json.loads((workdir / "config.json").read_text())
    views = (2 if ev.get("flip_tta") else 1) * (9 if ev.get("shift_tta") else 1)
    return {"run": str(workdir), "seed": config.get("seed"),
            "model": config.get("model", {}).get("name"),
            "step": ev.get("checkpoint_step"), "n": ev["n"], "views": views,
            "train_min": _training_minutes(workdir),
            **{k: ev[k] for k in ("gender_acc", "race_acc", "race_macro_f1", "age_mae",
                                  "age_cs5")},
            "others_recall": ev["race"]["per_class"]["Others"]["recall"]}


def group_mean(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.fmean(r[key] for r in rows) for key, _, _ in COLUMNS}


def table(groups: dict[str, list[dict[str, Any]]]) -> str:
    head = ["run", "seed", "views", "train min", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in groups.items():
        for r in rows:
            minutes = "-" if r["train_min"] is None else f"{r['train_min']:.1f}"
            lines.append("| " + " | ".join([f"{name}: {r['run']}", str(r["seed"]),
                                            str(r["views"]), minutes,
                                            *(format(r[k], f) for k, _, f in COLUMNS)]) + " |")
        if len(rows) > 1:
            mean = group_mean(rows)
            lines.append("| " + " | ".join([f"**{name}, mean of {len(rows)}**", "", "", "",
                                            *(format(mean[k], f) for k, _, f in COLUMNS)])
                         + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", required=True,
                        help="NAME=W1,W2,...: runs of one recipe (repeatable)")
    parser.add_argument("--report", default="test", help="eval report name (W/eval/<name>.json)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in args.group:
        name, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            raise SystemExit(f"--group {spec!r}: expected NAME=W1,W2,...")
        groups[name] = [run_row(Path(d), args.report) for d in dirs.split(",")]
    print(table(groups))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {name: {"runs": rows, **({"mean": group_mean(rows)} if len(rows) > 1 else {})}
             for name, rows in groups.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
