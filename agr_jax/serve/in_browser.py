"""The page's in-browser mode: the model as ONNX, run by onnxruntime-web in the browser.

The server only hands out files: `/model.onnx` (exported from the served model at start-up)
with `/model.json` (class names, image size), and onnxruntime-web's script and WebAssembly
from an npm package folder (`make ort-web` fetches it; nothing is vendored) under `/ort/`.
In this mode the page has no face detector: it takes the centre square of each frame as the
face crop (`detect="none"`), so it suits a face filling the frame.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

# onnxruntime-web's WebAssembly-only classic-script build and its SIMD WebAssembly.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def check_ort_dir(ort_dir: str | Path) -> Path:
    ort_dir = Path(ort_dir)
    missing = [f for f in ORT_FILES if not (ort_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{ort_dir}: onnxruntime-web files missing {missing}; "
                                "`make ort-web` puts them in runs/ort-web/dist")
    return ort_dir


def routes(ort_dir: str | Path, onnx_path: str | Path) -> list[BaseRoute]:
    """`/ort/*`, `/model.onnx` and `/model.json` (the export's sidecar)."""
    ort_dir, onnx_path = check_ort_dir(ort_dir), Path(onnx_path)
    sidecar = json.loads(Path(f"{onnx_path}.json").read_text())

    async def model(request: Request) -> Response:
        return FileResponse(onnx_path, media_type="application/octet-stream")

    async def model_json(request: Request) -> Response:
        return JSONResponse(sidecar)

    return [Mount("/ort", StaticFiles(directory=ort_dir)), Route("/model.onnx", model),
            Route("/model.json", model_json)]
