"""Markdown evaluation report from the `metrics.full_report` dict (plus figure links)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HEADLINE = (
    ("n", "faces"), ("age_mae", "age MAE (years)"), ("age_cs5", "age CS@5"),
    ("age_bin_acc", "age-bin accuracy"), ("gender_acc", "gender accuracy"),
    ("gender_macro_f1", "gender macro-F1"), ("race_acc", "race accuracy"),
    ("race_macro_f1", "race macro-F1"),
)
GROUP_COLS = ("n", "age_mae", "age_cs5", "age_bin_acc", "gender_acc", "gender_macro_f1",
              "race_acc", "race_macro_f1")


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def age_error_tables(report: Mapping[str, Any]) -> list[str]:
    """MAE per true-age decade, then of the bands users notice first (under 20, 60+)."""
    lines = ["MAE per true-age decade:", ""]
    lines += table(("decade", "faces", "MAE"),
                   [(d, v["n"], v["age_mae"]) for d, v in report["mae_by_decade"].items()])
    if report.get("mae_by_band"):
        lines += ["", "MAE of the children and teenagers, and of the elderly:", ""]
        lines += table(("true age", "faces", "MAE"),
                       [(b, v["n"], v["age_mae"]) for b, v in report["mae_by_band"].items()])
    return lines


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _class_section(title: str, section: Mapping[str, Any]) -> list[str]:
    lines = [f"### {title}", "",
             f"accuracy {_fmt(section['accuracy'])}, macro-F1 {_fmt(section['macro_f1'])}", ""]
    lines += table(
        ("class", "precision", "recall", "F1", "support"),
        [(name, s["precision"], s["recall"], s["f1"], s["support"])
         for name, s in section["per_class"].items()],
    )
    names = section["names"]
    lines += ["", "Confusion (rows true, columns predicted):", ""]
    lines += table(("true \\ pred", *names),
                    [(n, *row) for n, row in zip(names, section["confusion"], strict=True)])
    return lines + [""]


def group_section(title: str, groups: Mapping[str, Mapping[str, float]],
                   gaps: Mapping[str, float]) -> list[str]:
    lines = [f"### {title}", ""]
    rows = [(name, *(g[c] for c in GROUP_COLS)) for name, g in groups.items()]
    rows.append(("**max-min gap**", "", *(gaps.get(c, float("nan")) for c in GROUP_COLS[1:])))
    return lines + table(("group", *GROUP_COLS), rows) + [""]


def markdown(report: Mapping[str, Any], figures: Mapping[str, str], title: str) -> str:
    """The whole report; `figures` maps a caption to a path relative to the report file."""
    lines = [f"# {title}", ""]
    lines += [f"- source: `{report.get('source', '?')}`",
              f"- protocol: {report.get('protocol', 'split')}",
              f"- checkpoint: {report.get('checkpoint', '?')} "
              f"(step {report.get('checkpoint_step', '?')})"]
    if report.get("tta"):
        lines.append(f"- test-time augmentation: mean over {report['tta']}")
    if "baseline_age_mae" in report:
        lines.append(f"- predict-the-training-mean age MAE: {_fmt(report['baseline_age_mae'])}")
    if report.get("age_note"):
        lines.append(f"- note: {report['age_note']}")
    lines += ["", "## Headline", ""]
    lines += table(("metric", "value"), [(label, report[k]) for k, label in HEADLINE])
    coral = report["coral"]
    lo, hi = coral["age_range"]
    lines += ["", f"CORAL protocol (true ages {lo}-{hi}, {coral['n']:,} faces): "
              f"age MAE {_fmt(coral['age_mae'])}, CS@5 {_fmt(coral['age_cs5'])}, "
              f"gender {_fmt(coral['gender_acc'])}, race {_fmt(coral['race_acc'])}.", ""]
    lines += ["## Fairness: every metric per group", ""]
    lines += group_section("By race", report["by_race"], report["gaps"]["race"])
    lines += group_section("By gender", report["by_gender"], report["gaps"]["gender"])
    lines += ["## Age", "", *age_error_tables(report)]
    lines += [""] + _class_section("Age bins", report["age_bins"])
    lines += ["## Classification", ""]
    lines += _class_section("Gender", report["gender"])
    lines += _class_section("Race", report["race"])
    lines += calibration_section(report.get("calibration_report"))
    if figures:
        lines += ["## Figures", ""]
        for caption, rel in figures.items():
            lines += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    skipped = report.get("skipped") or []
    if skipped:
        lines += [f"## Skipped files ({len(skipped):,})", ""]
        lines += [f"- `{s['file_name']}`: {s['reason']}" for s in skipped]
        lines.append("")
    return "\n".join(lines)


def calibration_section(cal: Mapping[str, Any] | None) -> list[str]:
    """ECE before/after the temperatures, and the age interval's coverage per true decade."""
    if not cal:
        return []
    lines = ["## Calibration (fitted on the validation split)", ""]
    lines += table(("task", "temperature", "ECE before", "ECE after"),
                   [(t, e["temperature"], e["before"], e["after"])
                    for t, e in cal["ece"].items()])
    age = cal["age_interval"]
    method = (f" Method: {age['method']}" + (f" (scale {_fmt(age['scale'])})"
                                              if age.get("scale") is not None else "") + "."
              if age.get("method") else "")
    lines += ["", f"Age {age['level']:.0%} interval: coverage {_fmt(age['coverage'])}, "
              f"mean width {_fmt(age['mean_width'])} years.{method}", ""]
    lines += table(("true-age decade", "faces", "coverage", "mean width (years)"),
                   [(d, v["n"], v["coverage"], v["mean_width"])
                    for d, v in age["by_decade"].items()])
    return lines + [""]
