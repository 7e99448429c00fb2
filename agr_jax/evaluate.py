"""Evaluate a run: `python -m agr_jax.evaluate --workdir W [--split test] [--data_dir DIR]
[--protocol split|coral|kfold]`.

Writes W/eval/<name>.json, the Markdown report W/eval/<name>.md and figures in W/eval/<name>/.
"""

from absl import app, flags, logging

from agr_jax.cli import setup_logging
from agr_jax.evaluation import PROTOCOLS, evaluate_workdir, format_table

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_SPLIT = flags.DEFINE_string("split", "test", "Split of the run's dataset to evaluate.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Evaluate every valid image of this folder.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_PROTOCOL = flags.DEFINE_enum(
    "protocol", "split", list(PROTOCOLS),
    "split: the prepared seeded timestamp split; coral: only true ages 21-60 (report "
    "suffixed _coral); kfold: the held-out fold of a build prepared with --folds/--fold.",
)
_FIGURES = flags.DEFINE_bool("figures", True, "Write the PNG figures.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    setup_logging(logging.WARNING)
    report = evaluate_workdir(
        _WORKDIR.value, _SPLIT.value, _DATA_DIR.value, _CHECKPOINT.value,
        protocol=_PROTOCOL.value, figures=_FIGURES.value,
    )
    for skipped in report["skipped"]:
        print(f"skipped {skipped['file_name']}: {skipped['reason']}")
    cols = ("n", "age_mae", "baseline_age_mae", "age_cs5", "age_bin_acc", "gender_acc",
            "race_acc")
    name = report["source"].rsplit(":", 1)[-1] if _DATA_DIR.value is None else "folder"
    name += "_coral" if _PROTOCOL.value == "coral" else ""
    print(format_table({name: {c: report[c] for c in cols}}))
    print(
        f"(checkpoint: {report['checkpoint']} at step {report['checkpoint_step']}; "
        f"report: {report['markdown_path']}, {report['report_path']})"
    )


if __name__ == "__main__":
    app.run(main)
