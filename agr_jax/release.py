"""Release a trained run: `python -m agr_jax.release --workdir W [--out agr_jax/released]
[--checkpoint best|latest] [--views 1|2] [--compute_dtype float32|bfloat16]`.

Writes float16 weights, model.json (everything needed to build and run the model, with the
calibration fitted on the validation split), evaluation.json and the generated MODEL_CARD.md.
"""

from absl import app, flags, logging

from agr_jax.cli import setup_logging
from agr_jax.inference.release import release_workdir, released_dir

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_OUT = flags.DEFINE_string("out", str(released_dir()), "Release folder to write.")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", None, ["best", "latest"], "Default: the run's config.eval_checkpoint.")
_VIEWS = flags.DEFINE_enum("views", "1", ["1", "2"],
                           "Test-time views the calibration and card are measured with.")
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype", "float32", ["float32", "bfloat16"],
    "The dtype the release computes in, measured in it (hosts without native bfloat16 run "
    "a bfloat16 release in float32: agr_jax/inference/precision.py).")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    setup_logging(logging.WARNING)
    result = release_workdir(_WORKDIR.value, _OUT.value, _CHECKPOINT.value, int(_VIEWS.value),
                             _COMPUTE_DTYPE.value)
    rep = result["report"]
    cal = rep["calibration_report"]
    print(f"wrote {result['folder']} (weights {result['weights_mb']:.1f} MB)")
    print(f"test: n {rep['n']}, age MAE {rep['age_mae']:.3f}, gender {rep['gender_acc']:.4f}, "
          f"race {rep['race_acc']:.4f}; 90% interval coverage "
          f"{cal['age_interval']['coverage']:.4f} (mean width "
          f"{cal['age_interval']['mean_width']:.1f} y); ECE gender "
          f"{cal['ece']['gender']['before']:.4f} -> {cal['ece']['gender']['after']:.4f}, race "
          f"{cal['ece']['race']['before']:.4f} -> {cal['ece']['race']['after']:.4f}")


if __name__ == "__main__":
    app.run(main)
