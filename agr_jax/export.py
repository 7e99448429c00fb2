"""Export the model: `python -m agr_jax.export [--workdir W | --model default|fast] --format
stablehlo|onnx --out F`.

Without --workdir a released model is exported: --model default (`agr_jax/released`) or fast
(`agr_jax/released_fast`). Writes F (uint8 NHWC crops in, calibrated age, interval and
probabilities out, any batch size) and F.json (class names, image size, calibration).
`--mtcnn --out DIR` exports the MTCNN detector's three nets instead. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from agr_jax.cli import RELEASE_NAMES

# `agr_jax.inference.export.FORMATS`, here so that the parser needs no JAX (tests check).
FORMATS = ("stablehlo", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agr_jax.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="Training run (default: the released model).")
    parser.add_argument("--model", choices=RELEASE_NAMES, default="default",
                        help="Which released model without --workdir (fast: the small RoR); "
                             "ignored with --workdir.")
    parser.add_argument("--checkpoint", choices=["best", "latest"],
                        help="With --workdir; default: the run's config.eval_checkpoint.")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="File to write (and OUT.json beside it).")
    parser.add_argument("--views", type=int, choices=[1, 2], default=1,
                        help="2: average the face and its mirror inside the exported graph.")
    parser.add_argument("--mtcnn", action="store_true",
                        help="Export the MTCNN detector's P/R/O-Nets into the folder --out.")
    parser.add_argument("--pnet_side", type=int, default=320,
                        help="With --mtcnn: the P-Net's square input side (one canvas size).")
    parser.add_argument("--platforms", default=None,
                        help="StableHLO only: comma-separated, e.g. cpu,cuda (default: this "
                             "machine's backend).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mtcnn:
        from agr_jax.inference.export_mtcnn import export_mtcnn

        print(json.dumps(export_mtcnn(args.format, args.out, args.pnet_side)))
        return 0
    from agr_jax.inference import export as export_lib
    from agr_jax.inference.predictor import Predictor
    from agr_jax.inference.release import read_released

    # A run is calibrated on its validation split as `python -m agr_jax.predict` does it.
    bundle = (Predictor.from_workdir(args.workdir, args.checkpoint, views=args.views).bundle
              if args.workdir else read_released(args.model))
    platforms = args.platforms.split(",") if args.platforms else None
    info = export_lib.export(bundle, args.format, args.out, args.views, platforms)
    print(json.dumps({k: info[k] for k in ("path", "bytes", "format", "input", "outputs")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
