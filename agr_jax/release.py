"""Release a trained run, or re-score a release from its own files.

    python -m agr_jax.release --workdir W [--out agr_jax/released] [--checkpoint best|latest]
        [--views 1|2] [--compute_dtype float32|bfloat16]
    python -m agr_jax.release --refresh agr_jax/released --tfds_dir runs/utk_tfds [--views 1|2]
    python -m agr_jax.release --rebalance_age agr_jax/released --tfds_dir runs/utk_tfds
        [--out FOLDER] [--age_slack YEARS]

The first writes float16 weights and model.json, then (like the second) scores the written
files as the predictor runs them: the calibration fitted on the validation split (into
model.json), evaluation.json on the test split and the generated MODEL_CARD.md. `--refresh`
leaves weights.npz untouched (its sha256 is checked) and needs the build the release was
evaluated on (the README split for the shipped releases). `--rebalance_age` re-trains the
release's age head on the build's training split with age-balanced weights, the trunk frozen
(agr_jax/train/age_head.py), keeps the epoch chosen on the validation split and re-scores.
"""

from absl import app, flags, logging

from agr_jax.cli import setup_logging
from agr_jax.inference.release import (
    rebalance_age_head,
    refresh_release,
    release_workdir,
    released_dir,
)

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_OUT = flags.DEFINE_string("out", str(released_dir()), "Release folder to write.")
_REFRESH = flags.DEFINE_string(
    "refresh", None, "Release folder to re-score from its own files (instead of --workdir).")
_REBALANCE = flags.DEFINE_string(
    "rebalance_age", None, "Release folder whose age head to re-train with age-balanced "
    "weights (written to --out when given, else in place), then re-score.")
_AGE_SLACK = flags.DEFINE_float(
    "age_slack", 0.0, "With --rebalance_age: years the overall validation age MAE may rise "
    "for a lower MAE of the under-20s and over-60s (0: never).")
_TFDS_DIR = flags.DEFINE_string("tfds_dir", None,
                                "With --refresh or --rebalance_age: the prepared build (python -m "
                                "agr_jax.data.prepare --out DIR) to score it on.")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", None, ["best", "latest"], "Default: the run's config.eval_checkpoint.")
_VIEWS = flags.DEFINE_enum("views", None, ["1", "2"],
                           "Test-time views the calibration and card are measured with "
                           "(default 1; with --refresh, the views the release was fitted with).")
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype", "float32", ["float32", "bfloat16"],
    "The dtype the release computes in, measured in it (hosts without native bfloat16 run "
    "a bfloat16 release in float32: agr_jax/inference/precision.py).")
flags.register_multi_flags_validator(
    ["workdir", "refresh", "rebalance_age", "tfds_dir"],
    lambda f: sum(f[k] is not None for k in ("workdir", "refresh", "rebalance_age")) == 1
    and (f["workdir"] is not None or f["tfds_dir"] is not None),
    "give one of --workdir RUN, --refresh FOLDER or --rebalance_age FOLDER (the last two "
    "with --tfds_dir BUILD)")


def main(argv):
    del argv
    setup_logging(logging.WARNING)
    views = int(_VIEWS.value) if _VIEWS.value else None
    if _REBALANCE.value:
        out = _OUT.value if _OUT.present else None
        result = rebalance_age_head(_REBALANCE.value, _TFDS_DIR.value, out,
                                    slack=_AGE_SLACK.value)
        head = result["age_head"]
        before, after = head["validation_before"], head["validation_after"]
        print(f"age head: validation MAE {before['overall']:.3f} -> {after['overall']:.3f}, "
              f"under 20 {before['young']:.3f} -> {after['young']:.3f}, 60+ "
              f"{before['old']:.3f} -> {after['old']:.3f} (epoch {head['kept_epoch']} of "
              f"{head['epochs']})")
    elif _REFRESH.value:
        result = refresh_release(_REFRESH.value, _TFDS_DIR.value, views)
    else:
        result = release_workdir(_WORKDIR.value, _OUT.value, _CHECKPOINT.value, views or 1,
                                 _COMPUTE_DTYPE.value)
    rep = result["report"]
    cal = rep["calibration_report"]
    print(f"wrote {result['folder']} (weights {result['weights_mb']:.1f} MB, scored in "
          f"{rep['scored']['compute_dtype']})")
    print(f"test: n {rep['n']}, age MAE {rep['age_mae']:.3f}, gender {rep['gender_acc']:.4f}, "
          f"race {rep['race_acc']:.4f}; 90% interval coverage "
          f"{cal['age_interval']['coverage']:.4f} (mean width "
          f"{cal['age_interval']['mean_width']:.1f} y); ECE gender "
          f"{cal['ece']['gender']['before']:.4f} -> {cal['ece']['gender']['after']:.4f}, race "
          f"{cal['ece']['race']['before']:.4f} -> {cal['ece']['race']['after']:.4f}")


if __name__ == "__main__":
    app.run(main)
