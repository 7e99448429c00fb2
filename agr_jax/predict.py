"""Predict age, gender and race: `python -m agr_jax.predict [--workdir W | --model
default|fast] [--detector yunet|mtcnn|haar|none] [--min_face PX] [--out F.jsonl|F.csv]
[--annotate DIR] [--every N] [--camera 0] [--min_quality SCORE,PX] [--views 1|2]
[--compute_dtype float32|bfloat16] [--compile_cache DIR|off] PATH...`.

PATHs are image files, folders (recursive), globs and video files. Without --workdir a
released model is used: --model default (`agr_jax/released`) or fast
(`agr_jax/released_fast`). Exit status 1 when any input failed.
"""

import sys

from absl import app, flags, logging

from agr_jax import host_memory
from agr_jax.cli import RELEASE_NAMES, setup_logging
from agr_jax.inference.predictor import DEFAULT_DETECTOR, DETECTORS, WORK_SIDE

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run (default: the released model).")
_MODEL = flags.DEFINE_enum("model", "default", list(RELEASE_NAMES),
                           "Which released model without --workdir (fast: the small RoR); "
                           "ignored with --workdir.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", None, ["best", "latest"],
                                "With --workdir; default: the run's config.eval_checkpoint.")
_DETECTOR = flags.DEFINE_enum("detector", DEFAULT_DETECTOR, list(DETECTORS),
                              "Face detector; none: every input is an aligned face crop.")
_OUT = flags.DEFINE_string("out", None, "Write records here (.jsonl or .csv); default stdout.")
_ANNOTATE = flags.DEFINE_string("annotate", None, "Write annotated copies into this folder.")
_EVERY = flags.DEFINE_integer("every", 1, "Video: predict every N-th frame.")
_CAMERA = flags.DEFINE_string("camera", None, "Webcam index (or a video path/URL).")
_VIEWS = flags.DEFINE_enum("views", "1", ["1", "2"], "Test-time views (2: with the mirror).")
_MIN_SCORE = flags.DEFINE_float("min_score", 0.0,
                                "Abstain on faces detected with a lower score.")
_MIN_FACE = flags.DEFINE_integer(
    "min_face", 0,
    f"Smallest face side (px, in the photo) to find and predict: the detector's copy of the "
    f"photo is made large enough for it (more cost), and smaller faces abstain. 0: detect on "
    f"a copy of at most {WORK_SIDE} px long side, predict every face found.")
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype", None, ["float32", "bfloat16"],
    "Default: the model's own (model.json), float32 where the host lacks native bfloat16.")
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache", None,
    "JAX's persistent compilation cache: a folder, or off. Default: $AGR_JAX_COMPILE_CACHE, "
    "else ~/.cache/agr_jax/jax (a second run skips compiling).")
_MIN_QUALITY = flags.DEFINE_list(
    "min_quality", None, "SCORE,PX: shorthand for --min_score SCORE --min_face PX.")


def quality(values: list[str] | None, score: float, face: int) -> tuple[float, int]:
    if not values:
        return score, face
    if len(values) != 2:
        raise app.UsageError(f"--min_quality: expected SCORE,PX (e.g. 0.9,40), got {values}")
    try:
        return float(values[0]), int(values[1])
    except ValueError as e:
        raise app.UsageError(f"--min_quality: expected SCORE,PX (e.g. 0.9,40): {e}") from e


def main(argv):
    setup_logging(logging.WARNING)
    host_memory.reuse_freed_memory()  # before JAX starts: the forward stops faulting pages
    paths = argv[1:]
    if not paths and _CAMERA.value is None:
        raise app.UsageError("give image/video paths, folders or globs, or --camera N")
    from agr_jax.inference import compile_cache
    from agr_jax.inference.predictor import Predictor
    from agr_jax.inference.run import run

    compile_cache.enable(_COMPILE_CACHE.value)

    min_score, min_face = quality(_MIN_QUALITY.value, _MIN_SCORE.value, _MIN_FACE.value)
    options = dict(views=int(_VIEWS.value), min_score=min_score, min_face=min_face,
                   compute_dtype=_COMPUTE_DTYPE.value)
    predictor = (Predictor.from_workdir(_WORKDIR.value, _CHECKPOINT.value, **options)
                 if _WORKDIR.value else Predictor.default(_MODEL.value, **options))
    sys.exit(run(predictor, paths, detect=_DETECTOR.value, out=_OUT.value,
                 annotate_dir=_ANNOTATE.value, every=_EVERY.value, camera=_CAMERA.value))


if __name__ == "__main__":
    app.run(main)
