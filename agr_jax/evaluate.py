"""Evaluate a run: `python -m agr_jax.evaluate --workdir W [--split test] [--data_dir DIR]`."""

from absl import app, flags, logging

from agr_jax.cli import setup_logging
from agr_jax.evaluation import evaluate_workdir, format_table

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_SPLIT = flags.DEFINE_string("split", "test", "Split of the run's dataset to evaluate.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Evaluate every valid image of this folder.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    setup_logging(logging.WARNING)
    report = evaluate_workdir(_WORKDIR.value, _SPLIT.value, _DATA_DIR.value, _CHECKPOINT.value)
    for skipped in report["skipped"]:
        print(f"skipped {skipped['file_name']}: {skipped['reason']}")
    cols = ("n", "age_mae", "baseline_age_mae", "age_cs5", "gender_acc", "race_acc")
    name = report["source"].rsplit(":", 1)[-1] if _DATA_DIR.value is None else "folder"
    print(format_table({name: {c: report[c] for c in cols}}))
    print(
        f"(checkpoint: {report['checkpoint']} at step {report['checkpoint_step']}; "
        f"report: {report['report_path']})"
    )


if __name__ == "__main__":
    app.run(main)
