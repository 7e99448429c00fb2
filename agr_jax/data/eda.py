"""Label statistics of a UTKFace-format folder or archive, as text and PNG.

    python -m agr_jax.data.eda DIR [--out OUT_DIR] [--no_check_decode]

Writes OUT_DIR (default ./eda_<name of DIR>, in the current directory) with
``summary.txt``, ``summary.json``, ``age_hist.png``, ``gender_counts.png``,
``race_counts.png`` and ``race_x_gender.png``; prints the text summary and the rejects.
Reads labels from file names; with decode checking on (default) it also verifies that
each image decodes, so the rejects count matches what `prepare` would drop.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agr_jax.data import utkface


def label_stats(labels: Sequence[utkface.UTKLabel], num_rejects: int) -> dict[str, Any]:
    """Counts per gender, race, race x gender and age; age quantiles."""
    ages = np.asarray([lab.age for lab in labels], np.int64)
    cross = np.zeros((len(utkface.RACES), len(utkface.GENDERS)), np.int64)
    for lab in labels:
        cross[lab.race, lab.gender] += 1
    return {
        "num_images": len(labels),
        "num_rejects": int(num_rejects),
        "num_timestamps": len({lab.timestamp for lab in labels}),
        "age": {
            "min": int(ages.min()) if len(ages) else None,
            "max": int(ages.max()) if len(ages) else None,
            "mean": float(ages.mean()) if len(ages) else None,
            "quantiles": {f"p{q}": float(np.percentile(ages, q)) for q in (5, 25, 50, 75, 95)}
            if len(ages) else {},
            "per_decade": {f"{d * 10}-{d * 10 + 9}": int(np.sum(ages // 10 == d))
                           for d in np.unique(ages // 10)},
        },
        "gender": {g: int(cross[:, i].sum()) for i, g in enumerate(utkface.GENDERS)},
        "race": {r: int(cross[i].sum()) for i, r in enumerate(utkface.RACES)},
        "race_x_gender": {r: {g: int(cross[i, j]) for j, g in enumerate(utkface.GENDERS)}
                          for i, r in enumerate(utkface.RACES)},
    }


def format_stats(stats: dict[str, Any]) -> str:
    n = max(stats["num_images"], 1)
    age = stats["age"]
    lines = [
        f"images: {stats['num_images']:,} valid, {stats['num_rejects']:,} rejected, "
        f"{stats['num_timestamps']:,} distinct capture timestamps",
        f"age: min {age['min']}, max {age['max']}, mean {age['mean']:.1f}, "
        + ", ".join(f"{k} {v:.0f}" for k, v in age["quantiles"].items())
        if stats["num_images"] else "age: no images",
        "age per decade: " + ", ".join(f"{k}: {v:,}" for k, v in age["per_decade"].items()),
        "gender: " + ", ".join(f"{k} {v:,} ({v / n:.1%})" for k, v in stats["gender"].items()),
        "race: " + ", ".join(f"{k} {v:,} ({v / n:.1%})" for k, v in stats["race"].items()),
        "race x gender:",
        f"  {'':10s}" + "".join(f"{g:>10s}" for g in utkface.GENDERS),
    ]
    for race, row in stats["race_x_gender"].items():
        lines.append(f"  {race:10s}" + "".join(f"{row[g]:>10,}" for g in utkface.GENDERS))
    return "\n".join(lines)


def run_eda(source: str | Path, out_dir: str | Path, check_decode: bool = True
            ) -> tuple[dict[str, Any], utkface.ReadResult]:
    """Reads `source`, writes the text/JSON summary and the four figures into `out_dir`."""
    from agr_jax import plots

    result = utkface.read_utkface(source, check_decode=check_decode)
    labels = result.labels
    stats = label_stats(labels, len(result.rejects))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = format_stats(stats)
    (out / "summary.txt").write_text(
        text + "\n\n" + "\n".join(result.report_lines()) + ("\n" if result.rejects else "")
    )
    stats["rejects"] = [{"file_name": r.file_name, "reason": r.reason} for r in result.rejects]
    (out / "summary.json").write_text(json.dumps(stats, indent=1) + "\n")
    ages = np.asarray([lab.age for lab in labels])
    plots.histogram(ages, out / "age_hist.png", f"Age ({len(ages):,} faces)", "age (years)",
                    bins=np.arange(0, max(int(ages.max(initial=0)), 1) + 2) - 0.5)
    plots.bar_counts(stats["gender"], out / "gender_counts.png", "Gender")
    plots.bar_counts(stats["race"], out / "race_counts.png", "Race")
    cross = np.asarray([[row[g] for g in utkface.GENDERS]
                        for row in stats["race_x_gender"].values()])
    plots.heatmap(cross, list(utkface.RACES), list(utkface.GENDERS), out / "race_x_gender.png",
                  "Race x gender")
    return stats, result


def build_parser() -> argparse.ArgumentParser:
    """This entry point's flags (tests/test_docs_commands.py checks the docs against them)."""
    parser = argparse.ArgumentParser(description="Label statistics of a UTKFace-format set.")
    parser.add_argument("source", help="UTKFace folder or .tar.gz archive")
    parser.add_argument("--out", default=None, help="output folder (default ./eda_<name>)")
    parser.add_argument("--no_check_decode", action="store_true",
                        help="count from file names only (faster; undecodable files not found)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    source = Path(args.source)
    out = Path(args.out) if args.out else Path(f"eda_{source.name.split('.')[0]}")
    try:
        stats, result = run_eda(source, out, check_decode=not args.no_check_decode)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in result.report_lines():
        print(line)
    print(format_stats(stats))
    print(f"(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
