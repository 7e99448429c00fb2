"""Evaluate a run: `python -m agr_jax.evaluate --workdir W [--split test] [--data_dir DIR]
[--protocol split|coral|kfold] [--flip_tta] [--shift_tta N] [--nocalibrate]`.

Writes W/eval/<name>.json, the Markdown report W/eval/<name>.md and figures in W/eval/<name>/.
k-fold: `--protocol kfold --workdir W0,W1,...` (one run per fold) evaluates each fold's held-out
test split and writes the mean and std over folds to `kfold_<split>.json` in W0's parent.
"""

import json
from pathlib import Path

from absl import app, flags, logging

from agr_jax import host_memory
from agr_jax.cli import setup_logging
from agr_jax.evaluation import PROTOCOLS, evaluate_workdir, format_table, summarize_folds

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training run directory (kfold: comma-separated, one per fold).")
_SPLIT = flags.DEFINE_string("split", "test", "Split of the run's dataset to evaluate.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Evaluate every valid image of this folder.")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", None, ["best", "latest"],
    "Which checkpoint; default: the run's config.eval_checkpoint (best unless it says latest).")
_PROTOCOL = flags.DEFINE_enum(
    "protocol", "split", list(PROTOCOLS),
    "split: the prepared seeded timestamp split; coral: only true ages 21-60 (report "
    "suffixed _coral); kfold: the held-out fold of builds prepared with --folds/--fold.",
)
_FIGURES = flags.DEFINE_bool("figures", True, "Write the PNG figures.")
_FLIP_TTA = flags.DEFINE_bool(
    "flip_tta", None, "Average each face with its mirror; default: the run's config.eval_flip_tta.")
_SHIFT_TTA = flags.DEFINE_integer(
    "shift_tta", None,
    "Also average the 3x3 grid of crops shifted by +-N px (0: off); default: the run's "
    "config.eval_shift_tta.")
_CALIBRATE = flags.DEFINE_bool(
    "calibrate", True, "Also predict the validation split, fit the gender/race temperatures "
    "and the 90% age interval there, and report ECE before/after and interval coverage per "
    "true-age decade (one more pass over the validation split).")
flags.mark_flag_as_required("workdir")

COLS = ("n", "age_mae", "baseline_age_mae", "age_cs5", "age_bin_acc", "gender_acc", "race_acc")


def main(argv):
    del argv
    host_memory.reuse_freed_memory()
    setup_logging(logging.WARNING)
    workdirs = [w for w in _WORKDIR.value.split(",") if w]
    if len(workdirs) > 1 and _PROTOCOL.value != "kfold":
        raise app.UsageError("several --workdir values need --protocol kfold")
    rows, reports = {}, []
    for workdir in workdirs:
        report = evaluate_workdir(
            workdir, _SPLIT.value, _DATA_DIR.value, _CHECKPOINT.value,
            protocol=_PROTOCOL.value, figures=_FIGURES.value,
            flip_tta=_FLIP_TTA.value, shift_tta=_SHIFT_TTA.value, calibrate=_CALIBRATE.value,
        )
        reports.append(report)
        for skipped in report["skipped"]:
            print(f"skipped {skipped['file_name']}: {skipped['reason']}")
        name = report["source"].rsplit(":", 1)[-1] if _DATA_DIR.value is None else "folder"
        name += "_coral" if _PROTOCOL.value == "coral" else ""
        rows[name if len(workdirs) == 1 else Path(workdir).name] = {c: report[c] for c in COLS}
        print(
            f"({workdir}: checkpoint {report['checkpoint']} at step {report['checkpoint_step']}; "
            f"report: {report['markdown_path']}, {report['report_path']})"
        )
    if len(reports) > 1:
        summary = summarize_folds(reports)
        rows["mean"] = {c: summary["mean"].get(c, float("nan")) for c in COLS}
        rows["std"] = {c: summary["std"].get(c, float("nan")) for c in COLS}
        out = Path(workdirs[0]).absolute().parent / f"kfold_{_SPLIT.value}.json"
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"(k-fold summary over {len(reports)} folds: {out})")
    print(format_table(rows))


if __name__ == "__main__":
    app.run(main)
