"""Serve the model over HTTP: `python -m agr_jax.serve [--workdir W | --model default|fast]
[--host 127.0.0.1] [--port 8000] [--detector mtcnn|haar|none]`.

Without --workdir a released model is served: --model default (`agr_jax/released`) or fast
(`agr_jax/released_fast`). Routes: POST /v1/predict, GET /healthz, GET /metrics, the page
at /. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from agr_jax import host_memory
from agr_jax.cli import RELEASE_NAMES
from agr_jax.serve.limits import DETECTORS, Limits


def build_parser() -> argparse.ArgumentParser:
    d = Limits()
    parser = argparse.ArgumentParser(prog="python -m agr_jax.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="Training run (default: the released model).")
    parser.add_argument("--model", choices=RELEASE_NAMES, default="default",
                        help="Which released model without --workdir (fast: the small RoR); "
                             "ignored with --workdir.")
    parser.add_argument("--checkpoint", choices=["best", "latest"],
                        help="With --workdir; default: the run's config.eval_checkpoint.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Interface to bind (default loopback only).")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--detector", choices=DETECTORS, default="mtcnn",
                        help="Default ?detect= of /v1/predict (none: images are aligned crops).")
    parser.add_argument("--views", type=int, choices=[1, 2], default=1)
    parser.add_argument("--max_mb", type=float, default=d.max_bytes / 2**20,
                        help="Request body limit in MiB (larger: 413).")
    parser.add_argument("--max_faces", type=int, default=d.max_faces,
                        help="Face records per request (more are capped, and said so).")
    parser.add_argument("--timeout", type=float, default=d.timeout_s,
                        help="Seconds per request (then 504).")
    parser.add_argument("--max_batch", type=int, default=d.max_batch,
                        help="Images per device call of the micro-batcher.")
    parser.add_argument("--max_wait_ms", type=float, default=d.max_wait_ms,
                        help="How long an idle device waits for more requests.")
    parser.add_argument("--compute_dtype", choices=("float32", "bfloat16"), default=None,
                        help="Default: the model's own (model.json), float32 where the host "
                        "lacks native bfloat16 (agr_jax/inference/precision.py).")
    parser.add_argument("--ort_web", help="onnxruntime-web's dist folder (`make ort-web`): "
                        "enables the page's in-browser mode, with the model exported to ONNX "
                        "at start-up.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host_memory.reuse_freed_memory()  # before JAX starts: the forward stops faulting pages
    import uvicorn

    from agr_jax.inference.predictor import Predictor
    from agr_jax.serve.app import create_app

    options = dict(views=args.views, compute_dtype=args.compute_dtype)
    predictor = (Predictor.from_workdir(args.workdir, args.checkpoint, **options)
                 if args.workdir else Predictor.default(args.model, **options))
    limits = Limits(max_bytes=int(args.max_mb * 2**20), max_faces=args.max_faces,
                    timeout_s=args.timeout, max_batch=args.max_batch,
                    max_wait_ms=args.max_wait_ms)
    with tempfile.TemporaryDirectory(prefix="agr_serve_") as tmp:
        in_browser = None
        if args.ort_web:
            from agr_jax.inference import export
            from agr_jax.serve.in_browser import check_ort_dir

            onnx_path = Path(tmp) / "model.onnx"
            export.export(predictor.bundle, "onnx", onnx_path, args.views)
            in_browser = (check_ort_dir(args.ort_web), onnx_path)
        app = create_app(predictor, args.detector, limits, in_browser=in_browser)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
