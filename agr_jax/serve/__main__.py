"""Serve the model over HTTP: `python -m agr_jax.serve [--workdir W | --model default|fast]
[--host 127.0.0.1] [--port 8000] [--detector yunet|mtcnn|haar|none] [--detectors mtcnn,...]`.

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
from agr_jax.serve.limits import DEFAULT_DETECTOR, DETECTORS, Limits


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
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                        help="Default ?detect= of /v1/predict (none: images are aligned crops).")
    parser.add_argument("--detectors", default="", type=detector_list,
                        help="Comma-separated detectors also served through ?detect= (each "
                        "compiled at start-up); `none` (crops) is always served.")
    parser.add_argument("--views", type=int, choices=[1, 2], default=1)
    parser.add_argument("--max_mb", type=float, default=d.max_bytes / 2**20,
                        help="Request body limit in MiB (larger: 413).")
    parser.add_argument("--max_faces", type=int, default=d.max_faces,
                        help="Face records per request (more are capped, and said so).")
    parser.add_argument("--timeout", type=float, default=d.timeout_s,
                        help="Seconds per request, decode to answer (then 504).")
    parser.add_argument("--body_timeout", type=float, default=d.body_timeout_s,
                        help="Seconds to receive a request's body (then 408).")
    parser.add_argument("--max_batch", type=int, default=d.max_batch,
                        help="Crops per device call of the crop lane's micro-batcher.")
    parser.add_argument("--max_batch_photos", type=int, default=d.max_batch_photos,
                        help="Photos per detector call (bounds how long one call runs).")
    parser.add_argument("--photo_workers", type=int, default=d.photo_workers,
                        help="Detector calls that may run at once (host work overlaps).")
    parser.add_argument("--max_pending", type=int, default=d.max_pending,
                        help="Requests a lane holds at once; more get 503 with Retry-After.")
    parser.add_argument("--max_connections", type=int, default=d.max_connections,
                        help="Concurrent connections (uvicorn's limit_concurrency; then 503).")
    parser.add_argument("--max_wait_ms", type=float, default=d.max_wait_ms,
                        help="How long an idle device waits for more requests.")
    parser.add_argument("--compute_dtype", choices=("float32", "bfloat16"), default=None,
                        help="Default: the model's own (model.json), float32 where the host "
                        "lacks native bfloat16 (agr_jax/inference/precision.py).")
    parser.add_argument("--min_face", type=int, default=None,
                        help="Smallest face side (px, in the photo) to find; sets the size of "
                        "the detector's working copy, so a phone photo costs what a small one "
                        "does (default: the predictor's, see docs/predict.md).")
    parser.add_argument("--compile_cache", default=None,
                        help="JAX's persistent compilation cache: a folder, or off (default: "
                        "$AGR_JAX_COMPILE_CACHE, else ~/.cache/agr_jax/jax): a restart loads "
                        "the warm-up's programs instead of compiling them.")
    parser.add_argument("--ort_web", help="onnxruntime-web's dist folder (`make ort-web`): "
                        "enables the page's in-browser mode, with the model exported to ONNX "
                        "at start-up.")
    return parser


def detector_list(text: str) -> tuple[str, ...]:
    names = tuple(n for n in (x.strip() for x in text.split(",")) if n)
    bad = [n for n in names if n not in DETECTORS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown detector(s) {bad}; expected some of "
                                         f"{list(DETECTORS)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host_memory.reuse_freed_memory()  # before JAX starts: the forward stops faulting pages
    import uvicorn

    from agr_jax.inference import compile_cache
    from agr_jax.inference.predictor import Predictor
    from agr_jax.serve.app import create_app

    compile_cache.enable(args.compile_cache)
    options = dict(views=args.views, compute_dtype=args.compute_dtype)
    if args.min_face is not None:
        options["min_face"] = args.min_face
    predictor = (Predictor.from_workdir(args.workdir, args.checkpoint, **options)
                 if args.workdir else Predictor.default(args.model, **options))
    limits = Limits(max_bytes=int(args.max_mb * 2**20), max_faces=args.max_faces,
                    timeout_s=args.timeout, body_timeout_s=args.body_timeout,
                    max_batch=args.max_batch, max_batch_photos=args.max_batch_photos,
                    photo_workers=args.photo_workers,
                    max_wait_ms=args.max_wait_ms, max_pending=args.max_pending,
                    max_connections=args.max_connections)
    with tempfile.TemporaryDirectory(prefix="agr_serve_") as tmp:
        in_browser = None
        if args.ort_web:
            from agr_jax.inference import export
            from agr_jax.serve.in_browser import check_ort_dir

            onnx_path = Path(tmp) / "model.onnx"
            export.export(predictor.bundle, "onnx", onnx_path, args.views)
            in_browser = (check_ort_dir(args.ort_web), onnx_path)
        app = create_app(predictor, args.detector, limits, in_browser=in_browser,
                         detectors=args.detectors)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    limit_concurrency=limits.max_connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
